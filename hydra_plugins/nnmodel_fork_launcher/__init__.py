"""nnmodel's Hydra launcher plugin: ``hydra/launcher=fork`` (see :mod:`.fork_launcher`)."""
