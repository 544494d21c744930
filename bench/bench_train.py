"""Training step cost: netdef's Caffe-exact solver against torch.optim.SGD on the same module.

FCN-32s (models/fcn32s.prototxt, TRAIN, 134 M parameters) on one 3 x 128 x 128 image with its
label. netdef: Trainer.step() (forward, backward, Caffe's SGD update with momentum, weight
decay and lr/decay multipliers). Peer: the same GraphModule stepped by a hand-written loop with
torch.optim.SGD (the same per-blob multipliers as parameter groups). Also the update alone
(gradients already in place), where the two differ most.

    python bench/bench_train.py [--size 128] [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from timing import timed  # noqa: E402

from netdef.training.data import ItemSource  # noqa: E402
from netdef.training.train import make_trainer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class OneScene(ItemSource):
    """The same random image and label every time."""

    def __init__(self, size: int):
        rng = np.random.default_rng(0)
        self.image = rng.normal(0, 50, (3, size, size)).astype(np.float32)
        self.label = rng.integers(0, 21, (1, size, size)).astype(np.float32)

    def __len__(self):
        return 1

    def item(self, index, rng):
        return [self.image, self.label]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    folder = tempfile.mkdtemp()
    solver = (f'net: "{ROOT}/models/fcn32s.prototxt"\nbase_lr: 1e-10\nlr_policy: "fixed"\n'
              f'momentum: 0.99\nweight_decay: 0.0005\nmax_iter: 100\n'
              f'snapshot_prefix: "{folder}/bench"\n')
    trainer = make_trainer(solver, data={"input": OneScene(args.size)}, log=False)
    module, net = trainer.module, trainer.train_net
    inputs = net.inputs(0, None, "cpu")
    groups = [{"params": [item.tensor], "lr": 1e-10 * item.lr_mult,
               "weight_decay": 0.0005 * item.decay_mult} for item in trainer.solver.learnables]
    optimizer = torch.optim.SGD(groups, lr=1e-10, momentum=0.99)

    def peer_step():
        optimizer.zero_grad(set_to_none=True)
        net.objective(module(**inputs)).backward()
        optimizer.step()

    def peer_update():
        optimizer.step()

    rows = [("step (forward + backward + update)", timed(trainer.step, args.repeat),
             timed(peer_step, args.repeat)),
            ("update alone", timed(trainer.solver.step, args.repeat),
             timed(peer_update, args.repeat))]
    count = sum(item.tensor.numel() for item in trainer.solver.learnables)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}; FCN-32s TRAIN, 1 x 3 x {args.size} x {args.size}, "
          f"{count / 1e6:.1f} M learnable; median of {args.repeat} (ms)")
    print("| what | netdef | torch.optim.SGD loop | ratio (netdef / peer) |")
    print("|---|---|---|---|")
    for what, (_, ours), (_, peer) in rows:
        print(f"| {what} | {ours:.0f} | {peer:.0f} | {ours / peer:.2f}x |")


if __name__ == "__main__":
    main()
