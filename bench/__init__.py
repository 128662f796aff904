"""Speed and load: how fast each program runs, and how the servers hold up under callers.

python -m bench.speed    # make bench: every way to complete an image, one process
python -m bench.load     # make load: the servers side by side under load
python -m bench.soak     # make soak: the servers under steady load for minutes
"""
