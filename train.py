"""Train a feedforward network: `python train.py [overrides]`, e.g.

    python train.py                                   # digits, 64 ReLU hidden units, Adam
    python train.py model.activation=tanh optimizer=sgd optimizer.lr=0.5
    python train.py -m model.activation=sigmoid,tanh,relu seed=0,1,2   # a sweep

The config lives in configs/ (Hydra); the work is done by nnmodel.training.train.
"""

import hydra
from omegaconf import DictConfig

from nnmodel.training import train


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train(cfg).get("val/acc")


if __name__ == "__main__":
    main()
