"""rowgen core: the torch-free pieces every part shares (model config, bundle contract, bundles)."""
