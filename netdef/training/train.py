"""`netdef train`: Caffe's solver loop on PyTorch, on one process or many.

The loop is Caffe's Solver::Step: test when test_interval says so (the TEST
nets share the TRAIN net's tensors), run iter_size forward/backward passes
that accumulate gradients of the weighted losses, log, update (netdef.training.solver),
snapshot. Under torch.distributed (torchrun's environment, or `--nproc N`,
which launches it the same way) the net is wrapped in DistributedDataParallel,
which averages gradients over ranks as Caffe's multi-GPU solver does, and each
rank reads its own share of every global batch (netdef.training.data); rank 0 tests,
logs and snapshots.
"""
from __future__ import annotations

import contextlib
import csv
import datetime
import os
import sys
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch

from ..compiler.analysis import checked_net, reshape
from ..compiler.bind import build_module
from ..compiler.textformat import parse_message
from ..compiler.weights import layer_key
from .data import Prefetching, SourceContext, resolve_near
from ..errors import DataError, Problem, SolverError, raise_if_errors
from ..proto import netdef_pb2 as pb
from ..runtime._caffe import BadBatch
from .solver import Learnable, Solver, check_solver, solver_type


# ------------------------------------------------------------------ the solver file
@dataclass
class SolverFile:
    param: pb.SolverParameter
    path: str
    warnings: list = field(default_factory=list)  # unknown fields, ignored
    prefix_override: str | None = None  # `--snapshot-prefix`, in place of the file's
    lines: dict = field(default_factory=dict)  # field path -> line in the solver file

    def param_line(self, name: str) -> int | None:
        return self.lines.get((name,))

    def resolve(self, path: str) -> str:
        return resolve_near(path, self.path)

    @property
    def snapshot_prefix(self) -> str:
        """Caffe's rule: relative to the working directory (not the solver file), the solver
        file's name without extension when unset, and that name appended to the prefix when
        the prefix is a folder."""
        stem = os.path.splitext(os.path.basename(self.path))[0] if os.path.isfile(self.path) \
            else "netdef"
        prefix = self.prefix_override or self.param.snapshot_prefix
        if not prefix:
            return os.path.splitext(self.path)[0] if os.path.isfile(self.path) else stem
        return os.path.join(prefix, stem) if prefix.endswith(os.sep) or os.path.isdir(prefix) \
            else prefix


def check_snapshot_folder(solver_file: SolverFile) -> None:
    """Snapshots and logs go into a folder that exists: like Caffe, netdef creates none, so a
    solver file cannot scatter folders about the disk. Checked before training starts, not
    at the first snapshot."""
    prefix = solver_file.snapshot_prefix
    folder = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(folder):
        where = "--snapshot-prefix" if solver_file.prefix_override else "snapshot_prefix"
        raise SolverError(problems=[Problem(
            SolverError, f"{where} {prefix!r}: the folder {folder} does not exist (netdef, like "
            "Caffe, creates none; paths are relative to the working directory)",
            solver_file.path, solver_file.param_line("snapshot_prefix"))])


def read_solver(source) -> SolverFile:
    """A solver.prototxt (path or text), checked: every problem at once."""
    from ..compiler.parse import read_source

    content, path = read_source(source)
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    param = pb.SolverParameter()
    source_map, located = parse_message(text, param, path=path)
    problems = [problem for _, problem in located]
    raise_if_errors(problems)
    problems = check_solver(param, path)
    if not (param.net or param.HasField("net_param") or param.train_net
            or param.HasField("train_net_param")):
        problems.append(Problem(SolverError, "no net: give net, net_param, train_net or "
                                "train_net_param", path))
    raise_if_errors(problems)
    return SolverFile(param, path, [problem for _, problem in located if problem.warning],
                      lines=source_map.lines)


def _net_sources(solver: SolverFile) -> tuple:
    """(train net, [test nets]) as paths or text; test nets default to the training file."""
    param = solver.param
    if param.train_net or param.HasField("train_net_param"):
        path, inline = param.train_net, param.train_net_param
    else:
        path, inline = param.net, param.net_param
    train = solver.resolve(path) if path else inline  # an inline net_param goes in as it is
    tests = [solver.resolve(p) for p in param.test_net]
    tests += list(param.test_net_param)
    if not tests and (param.net or param.HasField("net_param")):
        tests = [train] * len(param.test_iter)
    if len(tests) != len(param.test_iter):
        raise SolverError(problems=[Problem(SolverError, f"{len(param.test_iter)} test_iter "
                                            f"values for {len(tests)} test nets", solver.path)])
    return train, tests


# ------------------------------------------------------------------ nets with their data
@dataclass
class FedNet:
    """A lowered net, the sources feeding its data layers, and its loss weights."""

    module: object
    feeds: list  # (Source, [placeholder names], layer index) per data layer
    loss_weights: dict[str, float]
    batches_read: int = 0

    def inputs(self, index: int, dtype, device) -> dict:
        blobs = {}
        for source, names, layer_index in self.feeds:
            net = self.module.caffe_net
            for name, array in zip(names, read_batch(source, index, net, net.layers[layer_index])):
                tensor = torch.from_numpy(np.asarray(array))
                if tensor.is_floating_point() and dtype is not None:
                    tensor = tensor.to(dtype)
                blobs[name] = tensor.to(device)
        return blobs

    def objective(self, outputs: dict):
        return sum(weight * outputs[name] for name, weight in self.loss_weights.items())


def build_net(source, phase: str, *, ctx: SourceContext, state=None, data=None, weights=None,
              device="cpu", dtype=None, seed: int = 0, surgery=None) -> FedNet:
    """Check the net, find every data layer's source (a user's `data` entry, keyed by layer
    or top name, wins), size the inputs from the first batch, and lower it."""
    level, stages = (state.level, tuple(state.stage)) if state is not None else (None, None)
    surgery = dict(surgery or {})
    solve_crops = not surgery.pop("literal_crops", False)
    net = checked_net(source, phase=phase, level=level, stages=stages, solve_crops=solve_crops)
    ctx = SourceContext(net.path, phase, ctx.seed, ctx.allow_python_layers)
    data = dict(data or {})
    sources, problems = [], []
    for layer in net.layers:
        if not layer.rule.is_input or layer.bottoms:
            continue
        found = data.pop(layer.name, None) or next(
            (data.pop(top) for top in layer.param.top if top in data), None)
        if found is None:
            found = _own_source(net, layer, ctx, fallback="" in data)
        if found is None and "" in data:  # `--data DIR` without a layer name
            found = data.pop("")
        if found is None:
            problems.append(net.problem(DataError, "nothing feeds this layer's tops in training: "
                                        "give a source for it (--data DIR for a segmentation "
                                        "folder)", layer))
        sources.append((layer, found))
    if data:
        problems.append(Problem(DataError, f"data given for {', '.join(sorted(data))}, which "
                                "names no data layer or top", net.path))
    raise_if_errors(problems)
    shapes = {}
    for layer, found in sources:
        for top, array in zip(layer.param.top, read_batch(found, 0, net, layer)):
            shapes[top] = tuple(np.shape(array))
    reshape(net, shapes, solve_crops)
    module = build_module(net, weights, device=device, dtype=dtype, seed=seed, **surgery)
    placeholders = iter(node.target for node in module.graph.nodes if node.op == "placeholder")
    names = {layer.index: [next(placeholders) for _ in layer.tops]
             for layer in module.caffe_net.layers if layer.rule.is_input}  # lower()'s order
    feeds = [(Prefetching(found), names[layer.index], layer.index) for layer, found in sources]
    return FedNet(module, feeds, loss_weights(module.caffe_net))


def _own_source(net, layer, ctx, fallback: bool):
    """The layer's own source; with a fallback at hand, one it cannot open is no error."""
    try:
        return layer.rule.data_source(layer.param, ctx)
    except DataError as exc:
        if not fallback:
            raise located(exc, net, layer) from None
        return None


def read_batch(source, index: int, net, layer) -> list:
    try:
        return source.batch(index)
    except DataError as exc:
        raise located(exc, net, layer) from None


def located_forward(model, module, blobs: dict) -> dict:
    """model(**blobs) (model: the module or its DDP wrapper); a layer that finds its batch
    breaking its contract (runtime's BadBatch) becomes a DataError at that layer's line."""
    try:
        return model(**blobs)
    except BadBatch as exc:
        layer = _raising_layer(module, exc.__traceback__)
        problem = (module.caffe_net.problem(DataError, str(exc), layer) if layer is not None
                   else Problem(DataError, str(exc)))
        raise DataError(problems=[problem]) from None


def _raising_layer(module, trace):
    """The Caffe layer whose submodule the traceback passes through last, or None."""
    targets = {id(child): name for name, child in module.named_children()}
    target = None
    for frame, _ in traceback.walk_tb(trace):
        target = targets.get(id(frame.f_locals.get("self")), target)
    name = next((node.meta.get("caffe_layer") for node in module.graph.nodes
                 if node.op == "call_module" and node.target == target), None)
    return next((layer for layer in module.caffe_net.layers if layer.name == name), None)


def located(error: DataError, net, layer) -> DataError:
    """The error with each problem placed at the data layer's line (sources know files and
    items, not where the net names them)."""
    return DataError(problems=[problem if problem.line else
                               net.problem(DataError, problem.message, layer)
                               for problem in error.problems])


def loss_weights(net) -> dict[str, float]:
    """Caffe's loss weights by output blob: loss_weight as written, else the rule's default
    for the first top (1 for loss layers)."""
    weights = {}
    for layer in net.layers:
        written = list(layer.param.loss_weight)
        default = [layer.rule.loss_weight] if layer.rule is not None else []
        for blob_id, weight in zip(layer.tops, written or default):
            if weight:
                weights[net.blobs[blob_id].name] = float(weight)
    return weights


def learnables(module) -> list[Learnable]:
    """The learnable blobs with their ParamSpec multipliers. `param { name }` shares a blob:
    later layers take the first one's tensor. lr_mult 0 freezes a blob; buffers (BatchNorm's
    statistics) are never learned."""
    net = module.caffe_net
    owners, result, problems, seen = {}, [], [], {}
    for index, target, blob_names in module.caffe_parameters:
        layer, submodule = net.layers[index], module.get_submodule(target)
        key = layer_key(layer.name, seen)
        specs = list(layer.param.param)
        for position, blob in enumerate(blob_names):
            tensor = submodule._parameters.get(blob)
            if tensor is None:
                continue
            spec = specs[position] if position < len(specs) else pb.ParamSpec()
            owner = owners.get(spec.name) if spec.name else None
            if owner is not None:
                problems += _share(net, layer, submodule, blob, spec, owner)
                continue
            item = Learnable(f"{key}.{position}", tensor, spec.lr_mult, spec.decay_mult, index)
            if spec.name:
                owners[spec.name] = item
            tensor.requires_grad_(item.lr_mult != 0)
            if item.lr_mult != 0:
                result.append(item)
    raise_if_errors(problems)
    return result


def _share(net, layer, submodule, blob, spec, owner: Learnable) -> list[Problem]:
    tensor = submodule._parameters[blob]
    same = tensor.shape == owner.tensor.shape if spec.share_mode == pb.ParamSpec.STRICT \
        else tensor.numel() == owner.tensor.numel()
    if not same or tensor.shape != owner.tensor.shape:
        return [net.problem(SolverError, f"shared param '{spec.name}' is {tuple(tensor.shape)} "
                            f"here but {tuple(owner.tensor.shape)} in its owner", layer)]
    for name in ("lr_mult", "decay_mult"):
        if spec.HasField(name) and getattr(spec, name) != getattr(owner, name):
            return [net.problem(SolverError, f"shared param '{spec.name}' has {name} "
                                f"{getattr(spec, name):g}; its owner {getattr(owner, name):g}",
                                layer)]
    submodule._parameters[blob] = owner.tensor
    return []


def all_reach_the_loss(fed: FedNet, items: list[Learnable]) -> bool:
    """Whether every learnable blob's layer lies upstream of a weighted loss (DDP must hunt
    for unused parameters every step otherwise)."""
    import networkx as nx

    net = fed.module.caffe_net
    losses = [("blob", blob_id) for blob_id, blob in net.blobs.items()
              if blob.name in fed.loss_weights and not blob.consumers]
    upstream = set().union(*(nx.ancestors(net.graph, node) for node in losses)) if losses \
        else set()
    return all(net.layers[item.layer_index].node in upstream for item in items)


def share_tensors(source_module, target_module) -> None:
    """Give the target net the source net's blobs, layer by layer name (Caffe's
    ShareTrainedLayersWith), so a TEST net always sees the weights being trained."""
    by_name: dict[str, list] = {}
    for index, target, names in source_module.caffe_parameters:
        layer_name = source_module.caffe_net.layers[index].name
        by_name.setdefault(layer_name, []).append((source_module.get_submodule(target), names))
    for index, target, names in target_module.caffe_parameters:
        layer = target_module.caffe_net.layers[index]
        if not by_name.get(layer.name):
            continue
        source, source_names = by_name[layer.name].pop(0)
        destination = target_module.get_submodule(target)
        for name, source_name in zip(names, source_names):
            tensor = getattr(source, source_name)
            if tuple(tensor.shape) != tuple(getattr(destination, name).shape):
                raise SolverError(problems=[target_module.caffe_net.problem(
                    SolverError, f"blob {name} is {tuple(getattr(destination, name).shape)} in "
                    f"the TEST net but {tuple(tensor.shape)} in the TRAIN net", layer)])
            table = destination._parameters if name in destination._parameters \
                else destination._buffers
            table[name] = tensor


# ------------------------------------------------------------------ the loop
@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> "Distributed":
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)),
                   int(env.get("LOCAL_RANK", 0)))

    @property
    def root(self) -> bool:
        return self.rank == 0


@dataclass
class Trainer:
    """One training run. `run()` trains to max_iter; `step()` is one Caffe iteration."""

    solver_file: SolverFile
    train_net: FedNet
    test_nets: list
    solver: Solver
    dist: Distributed = field(default_factory=Distributed)
    device: object = "cpu"
    dtype: object = None
    log: object = None  # a Log, on rank 0
    losses: list = field(default_factory=list)  # the last average_loss iterations' losses

    @property
    def param(self):
        return self.solver_file.param

    @property
    def module(self):
        return self.train_net.module

    @property
    def iteration(self) -> int:
        return self.solver.iteration

    def run(self, max_iter: int | None = None) -> "Trainer":
        stop = self.param.max_iter if max_iter is None else max_iter
        self._say(f"Solving {self.module.caffe_net.parsed.net.name or 'the net'}")
        self._say(f"Learning Rate Policy: {self.param.lr_policy}")
        for warning in self.solver_file.warnings:
            self._say(warning.format(), level="W")
        with self._progress(stop) as bar:
            while self.iteration < stop:
                if self._test_due():
                    self.test()
                loss = self.step()
                bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                bar.update(1)
                if self.param.snapshot and self.iteration % self.param.snapshot == 0:
                    self.snapshot()
        if self.param.snapshot_after_train and (
                not self.param.snapshot or self.iteration % self.param.snapshot):
            self.snapshot()
        if self.param.test_interval and self.iteration % self.param.test_interval == 0:
            self.test()
        self._say("Optimization Done.")
        return self

    def _test_due(self) -> bool:
        interval = self.param.test_interval
        return bool(interval and self.test_nets and self.iteration % interval == 0
                    and (self.iteration > 0 or self.param.test_initialization))

    def step(self) -> float:
        """iter_size forward/backward passes, then the update; returns this iteration's loss."""
        model, size, iteration = self._model(), self.param.iter_size, self.iteration
        self.module.zero_grad(set_to_none=True)
        loss, outputs = 0.0, {}
        for part in range(size):
            global_index = (iteration * size + part) * self.dist.world + self.dist.rank
            blobs = self.train_net.inputs(global_index, self.dtype, self.device)
            sync = contextlib.nullcontext() if part == size - 1 or not hasattr(model, "no_sync") \
                else model.no_sync()
            with sync:
                outputs = located_forward(model, self.module, blobs)
                objective = self.train_net.objective(outputs)
                objective.backward()
            loss += float(objective.detach()) / size
        self.losses = (self.losses + [loss])[-max(self.param.average_loss, 1):]
        displaying = self.param.display and iteration % self.param.display == 0
        if displaying:
            self._display(iteration, outputs)
        rate = self.solver.step()
        if self.log:
            self.log.row(iteration, rate, loss, self.smoothed_loss)
            if displaying:
                self._say(f"Iteration {iteration}, lr = {rate:g}")
        return loss

    @property
    def smoothed_loss(self) -> float:
        return sum(self.losses) / len(self.losses) if self.losses else float("nan")

    def _display(self, iteration: int, outputs: dict) -> None:
        self._say(f"Iteration {iteration}, loss = {self.smoothed_loss:g}")
        for number, (name, value) in enumerate(_scalars(outputs)):
            weight = self.train_net.loss_weights.get(name, 0.0)
            tail = f" (* {weight:g} = {weight * value:g} loss)" if weight else ""
            self._say(f"    Train net output #{number}: {name} = {value:g}{tail}")

    def _model(self):
        return getattr(self, "ddp", None) or self.module

    @torch.no_grad()
    def test(self) -> list[dict]:
        """Each TEST net's outputs averaged over its test_iter batches (rank 0 only)."""
        if not self.dist.root:
            return []
        results = []
        for number, (net, iterations) in enumerate(zip(self.test_nets, self.param.test_iter)):
            self._say(f"Iteration {self.iteration}, Testing net (#{number})")
            sums: dict[str, float] = {}
            for _ in range(iterations):
                outputs = located_forward(net.module, net.module,
                                          net.inputs(net.batches_read, self.dtype, self.device))
                net.batches_read += 1
                for name, value in _scalars(outputs):
                    sums[name] = sums.get(name, 0.0) + value / iterations
            for k, (name, value) in enumerate(sums.items()):
                weight = net.loss_weights.get(name, 0.0)
                tail = f" (* {weight:g} = {weight * value:g} loss)" if weight else ""
                self._say(f"    Test net output #{k}: {name} = {value:g}{tail}")
                if self.log:
                    self.log.test_row(self.iteration, number, name, value)
            results.append(sums)
        return results

    def snapshot(self) -> str | None:
        """`{prefix}_iter_N.safetensors` (weights, keyed layer.blob) and
        `{prefix}_iter_N.solverstate.safetensors` (histories, iteration); rank 0 writes."""
        if not self.dist.root:
            return None
        from safetensors.torch import save_file

        from ..compiler.safetensors_io import write_safetensors
        base = f"{self.solver_file.snapshot_prefix}_iter_{self.iteration}"
        for path in (base + ".safetensors", base + ".solverstate.safetensors"):
            if os.path.exists(path):
                self._say(f"Overwriting the existing {path}")
        write_safetensors(base + ".safetensors", weight_tensors(self.module))
        self._say(f"Snapshotting to {base}.safetensors")
        state = {key: tensor.detach().cpu().contiguous()
                 for key, tensor in self.solver.state().items()}
        save_file(state, base + ".solverstate.safetensors",
                  metadata={"iter": str(self.iteration), "learned_net": base + ".safetensors",
                            "type": solver_type(self.param)})
        self._say(f"Snapshotting solver state to {base}.solverstate.safetensors")
        return base

    def _say(self, message: str, level: str = "I") -> None:
        if self.log:
            self.log.line(message, level)

    def _progress(self, stop: int):
        """A bar with the loss, on a terminal only: logs and CI get the glog lines alone."""
        if not self.log or not self.log.progress or not _on_terminal(sys.stderr):
            return contextlib.nullcontext(_NoBar())
        from tqdm import tqdm
        return tqdm(total=stop, initial=self.iteration, unit="iter", file=sys.stderr,
                    dynamic_ncols=True, leave=False)


def _on_terminal(stream) -> bool:
    from netdef.compiler import progress
    return progress.ALWAYS or (hasattr(stream, "isatty") and stream.isatty())


class _NoBar:
    def update(self, count):
        pass

    def set_postfix(self, **values):
        pass


def _scalars(outputs: dict):
    """(name, value) for each output, a blob of several values by its mean (Caffe prints each
    value; one number per blob keeps the log readable)."""
    for name, tensor in outputs.items():
        yield name, float(tensor.detach().double().mean())


def weight_tensors(module) -> dict:
    """Every blob of the net keyed `layer.blob` (`layer@k.blob` for repeated names)."""
    tensors, seen = {}, {}
    for index, target, names in module.caffe_parameters:
        key = layer_key(module.caffe_net.layers[index].name, seen)
        submodule = module.get_submodule(target)
        for position, blob in enumerate(names):
            tensors[f"{key}.{position}"] = getattr(submodule, blob).detach().float().cpu()
    return tensors


class Log:
    """Caffe-style log lines (glog's prefix, so Caffe's parse_log.py reads them) on stderr
    and in `{prefix}.log`, and a CSV of loss and lr per iteration (+ one of test outputs)."""

    def __init__(self, prefix: str, progress: bool = True, stream=None, resume_at: int = 0):
        self.progress, self.stream = progress, stream if stream is not None else sys.stderr
        self.text = open(prefix + ".log", "a")
        self.csv_path, self.test_csv_path = prefix + "_train.csv", prefix + "_test.csv"
        self.train_rows = _csv(self.csv_path, ["iteration", "lr", "loss", "smoothed_loss"],
                               resume_at)
        self.test_rows = _csv(self.test_csv_path, ["iteration", "test_net", "output", "value"],
                              resume_at)

    def line(self, message: str, level: str = "I") -> None:
        """One glog line: level I (info) or W (warning), date, time, pid, message."""
        now = datetime.datetime.now()
        text = f"{level}{now:%m%d %H:%M:%S.%f} {os.getpid():>5} netdef] {message}"
        if self.progress:
            from tqdm import tqdm
            tqdm.write(text, file=self.stream)
        else:
            print(text, file=self.stream)
        print(text, file=self.text, flush=True)

    def row(self, iteration, rate, loss, smoothed) -> None:
        self.train_rows[0].writerow([iteration, f"{rate:.9g}", f"{loss:.9g}", f"{smoothed:.9g}"])
        self.train_rows[1].flush()

    def test_row(self, iteration, number, name, value) -> None:
        self.test_rows[0].writerow([iteration, number, name, f"{value:.9g}"])
        self.test_rows[1].flush()

    def close(self) -> None:
        for handle in (self.text, self.train_rows[1], self.test_rows[1]):
            handle.close()


def _csv(path: str, header: list[str], resume_at: int = 0):
    """A CSV to append rows to. Resuming at iteration k drops the rows of iterations k and
    later that the earlier run wrote, so the curves do not zigzag."""
    fresh = not os.path.exists(path) or os.path.getsize(path) == 0
    if not fresh and resume_at:
        with open(path, newline="") as old:
            rows = list(csv.reader(old))
        kept = [row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) < resume_at]
        with open(path, "w", newline="") as new:
            csv.writer(new).writerows(rows[:1] + kept)
    handle = open(path, "a", newline="")
    writer = csv.writer(handle)
    if fresh:
        writer.writerow(header)
    return writer, handle


# ------------------------------------------------------------------ entry point
def train(solver, *, max_iter: int | None = None, **options) -> Trainer:
    """Train as `caffe train -solver SOLVER` would, to max_iter (the solver's by default);
    the options are make_trainer's."""
    trainer = make_trainer(solver, **options)
    try:
        return trainer.run(max_iter)
    finally:
        if trainer.log:
            trainer.log.close()


def make_trainer(solver, *, data=None, test_data=None, weights=None, resume=None, device="cpu",
                 dtype=None, allow_python_layers: bool = False, seed: int | None = None,
                 log: bool = True, progress: bool = True, surgery=None,
                 snapshot_prefix: str | None = None) -> Trainer:
    """A ready Trainer. `data` maps a data layer (or top) name to a netdef.training.data Source for
    layers the file cannot feed (Input layers), `test_data` likewise for the TEST nets;
    `weights` initialises from a caffemodel or safetensors file, with load()'s net surgery
    options in `surgery` (convolutionalize, expand_score, and literal_crops for every net);
    `resume` continues from a `.solverstate.safetensors` snapshot. Snapshots and logs go to
    `snapshot_prefix` when given, else the solver's, relative to the working directory."""
    solver_file = read_solver(solver)
    solver_file.prefix_override = snapshot_prefix
    if log:
        check_snapshot_folder(solver_file)
    param = solver_file.param
    surgery = dict(surgery or {})
    literal_crops = surgery.pop("literal_crops", False)
    dist = Distributed.from_environment()
    device = _device(device, dist)
    if dist.world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
    seed = (param.random_seed if param.random_seed >= 0 else 0) if seed is None else seed
    torch.manual_seed(seed)
    state_tensors, iteration = ({}, 0)
    if resume is not None:
        state_tensors, iteration, weights = read_state(resume)
    ctx = SourceContext(seed=seed, allow_python_layers=allow_python_layers)
    train_source, test_sources = _net_sources(solver_file)
    train_net = build_net(train_source, "TRAIN", ctx=ctx, state=_state(param, "train_state"),
                          data=data, weights=weights, device=device, dtype=dtype, seed=seed,
                          surgery=dict(literal_crops=literal_crops,
                                       **({} if resume is not None else surgery)))
    solver_obj = Solver(param, learnables(train_net.module))
    if resume is not None:
        solver_obj.load_state(state_tensors, iteration)
    tests = []
    if dist.root:
        for number, test_source in enumerate(test_sources):
            state = param.test_state[number] if number < len(param.test_state) else None
            net = build_net(test_source, "TEST", ctx=ctx, state=state, data=test_data,
                            device=device, dtype=dtype, seed=seed,
                            surgery=dict(literal_crops=literal_crops))
            share_tensors(train_net.module, net.module)
            tests.append(net)
    trainer = Trainer(solver_file, train_net, tests, solver_obj, dist, device, dtype,
                      Log(solver_file.snapshot_prefix, progress, resume_at=iteration)
                      if log and dist.root else None)
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel
        ids = [torch.device(device).index] if torch.device(device).type == "cuda" else None
        trainer.ddp = DistributedDataParallel(
            train_net.module, device_ids=ids,
            find_unused_parameters=not all_reach_the_loss(train_net, solver_obj.learnables))
    return trainer


def spawn_workers(argv: list[str], nproc: int) -> int:
    """Run `python -m netdef ARGV` in nproc processes with torchrun's environment (RANK,
    WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT on this host); the first failure stops all."""
    import socket
    import subprocess

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workers = []
    for rank in range(nproc):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc),
                   LOCAL_WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        workers.append(subprocess.Popen([sys.executable, "-m", "netdef", *argv], env=env))
    code = 0
    try:
        while workers:
            for worker in list(workers):
                status = worker.poll()
                if status is None:
                    continue
                workers.remove(worker)
                if status and not code:
                    code = status
                    for other in workers:
                        other.terminate()
            time.sleep(0.05)
    except KeyboardInterrupt:
        for worker in workers:
            worker.terminate()
        raise
    return code


def _device(device, dist: Distributed):
    if str(device) == "cuda" and dist.world > 1:
        return f"cuda:{dist.local_rank}"
    return device


def _state(param, name: str):
    return getattr(param, name) if param.HasField(name) else None


def read_state(path: str) -> tuple[dict, int, str]:
    """(history tensors, iteration, weights file) of a solver-state snapshot."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise SolverError(f"{path}: not a readable solver state: {exc}") from None
    if "iter" not in metadata or "learned_net" not in metadata:
        raise SolverError(f"{path}: not a netdef solver state (no iter / learned_net)")
    weights = metadata["learned_net"]
    if not os.path.exists(weights):
        weights = os.path.join(os.path.dirname(path), os.path.basename(weights))
    return tensors, int(metadata["iter"]), weights


__all__ = ["train", "make_trainer", "read_solver", "Trainer"]
