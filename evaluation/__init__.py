"""Quality of completions: test-split MSE beside baselines, and measures of sampled completions.

python -m evaluation.evaluate      # make eval
python -m evaluation.classifier    # make classifier: the CNN whose features judge samples
"""
