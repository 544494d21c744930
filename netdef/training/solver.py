"""Caffe's solvers: learning-rate policies and update rules, step for step as Caffe computes them.

A step, after the iter_size forward/backward passes have accumulated gradients:
clip the global L2 norm of all gradients (before normalising: Caffe's order),
divide by iter_size, add weight decay * decay_mult (L2: the weight, L1: its sign),
turn the gradient into an update with the solver's rule at rate lr * lr_mult,
and subtract it. Each rule keeps Caffe's history blobs, so a snapshot of the
state resumes exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..errors import Problem, SolverError, raise_if_errors

# ------------------------------------------------------------------ learning-rate policies


def learning_rate(param, iteration: int) -> float:
    """The rate at `iteration` under param.lr_policy (SolverParameter)."""
    policy = LR_POLICIES.get(param.lr_policy)
    if policy is None:
        raise SolverError(f"unknown lr_policy '{param.lr_policy}'; one of {', '.join(LR_POLICIES)}")
    return param.base_lr * policy(param, iteration)


def _multistep_count(param, iteration: int) -> int:
    """How many stepvalues `iteration` has reached (Caffe advances its current_step so)."""
    return sum(1 for value in param.stepvalue if iteration >= value)


def _sigmoid(param, it):
    try:
        return 1.0 / (1.0 + math.exp(-param.gamma * (it - param.stepsize)))
    except OverflowError:  # exp(huge): the rate has not risen yet
        return 0.0


LR_POLICIES = {
    "fixed": lambda param, it: 1.0,
    "step": lambda param, it: param.gamma ** (it // param.stepsize),
    "exp": lambda param, it: param.gamma ** it,
    "inv": lambda param, it: (1.0 + param.gamma * it) ** -param.power,
    "multistep": lambda param, it: param.gamma ** _multistep_count(param, it),
    "poly": lambda param, it: (1.0 - it / param.max_iter) ** param.power,
    "sigmoid": _sigmoid,
}


# ------------------------------------------------------------------ update rules
class UpdateRule:
    """One solver type: `histories` tensors per parameter, and the update from a gradient
    (which the caller subtracts at once; it may be a history tensor itself)."""

    type_name = ""
    histories = 1

    def check(self, param) -> list[str]:
        return []

    def update(self, diff, history: list, rate: float, param, iteration: int):
        raise NotImplementedError


class SGD(UpdateRule):
    type_name = "SGD"

    def update(self, diff, history, rate, param, iteration):
        (velocity,) = history
        velocity.mul_(param.momentum).add_(diff, alpha=rate)
        return velocity


class Nesterov(UpdateRule):
    type_name = "Nesterov"

    def update(self, diff, history, rate, param, iteration):
        (velocity,) = history
        previous = velocity.clone()
        velocity.mul_(param.momentum).add_(diff, alpha=rate)
        return velocity * (1 + param.momentum) - previous * param.momentum


class AdaGrad(UpdateRule):
    type_name = "AdaGrad"

    def check(self, param):
        return ["AdaGrad takes no momentum (set momentum: 0)"] if param.momentum else []

    def update(self, diff, history, rate, param, iteration):
        (squares,) = history
        squares.add_(diff * diff)
        return rate * diff / (squares.sqrt() + param.delta)


class RMSProp(UpdateRule):
    type_name = "RMSProp"

    def check(self, param):
        problems = ["RMSProp takes no momentum (set momentum: 0)"] if param.momentum else []
        if not 0 <= param.rms_decay < 1:
            problems.append(f"rms_decay must be in [0, 1), not {param.rms_decay}")
        return problems

    def update(self, diff, history, rate, param, iteration):
        (mean_square,) = history
        mean_square.mul_(param.rms_decay).add_(diff * diff, alpha=1 - param.rms_decay)
        return rate * diff / (mean_square.sqrt() + param.delta)


class AdaDelta(UpdateRule):
    """Zeiler's rule; `momentum` is the decay of both running averages."""

    type_name = "AdaDelta"
    histories = 2

    def update(self, diff, history, rate, param, iteration):
        gradients, updates = history
        decay = param.momentum
        gradients.mul_(decay).add_(diff * diff, alpha=1 - decay)
        step = diff * ((updates + param.delta) / (gradients + param.delta)).sqrt()
        updates.mul_(decay).add_(step * step, alpha=1 - decay)
        return rate * step


class Adam(UpdateRule):
    """`momentum` is beta1, `momentum2` beta2 and `delta` epsilon; t = iteration + 1."""

    type_name = "Adam"
    histories = 2

    def update(self, diff, history, rate, param, iteration):
        first, second = history
        beta1, beta2 = param.momentum, param.momentum2
        first.mul_(beta1).add_(diff, alpha=1 - beta1)
        second.mul_(beta2).add_(diff * diff, alpha=1 - beta2)
        t = iteration + 1
        correction = math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        return rate * correction * first / (second.sqrt() + param.delta)


UPDATE_RULES = {rule.type_name: rule() for rule in (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam)}
# the legacy solver_type enum (SGD = 0 ... ADAM = 5), in that order
LEGACY_TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")


def solver_type(param) -> str:
    """`type`, or the legacy `solver_type` enum where only that is set (Caffe's upgrade)."""
    if not param.HasField("type") and param.HasField("solver_type"):
        return LEGACY_TYPES[param.solver_type]
    return param.type


# ------------------------------------------------------------------ the solver
@dataclass
class Learnable:
    """One learnable blob: Caffe's `layer.index` name, its tensor and its multipliers."""

    name: str
    tensor: torch.Tensor
    lr_mult: float = 1.0
    decay_mult: float = 1.0
    layer_index: int = -1  # the owning layer in the net's IR


@dataclass
class Solver:
    """Applies Caffe's update to `learnables` from their accumulated `.grad`s."""

    param: object  # SolverParameter
    learnables: list[Learnable]
    iteration: int = 0
    history: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self):
        self.rule = UPDATE_RULES.get(solver_type(self.param))
        raise_if_errors(check_solver(self.param))
        for item in self.learnables:
            self.history.setdefault(item.name, [torch.zeros_like(item.tensor)
                                                for _ in range(self.rule.histories)])

    @property
    def rate(self) -> float:
        return learning_rate(self.param, self.iteration)

    @torch.no_grad()
    def step(self) -> float:
        """One update from the gradients in `.grad`; returns the rate used."""
        rate = self.rate
        for item in self.learnables:  # Caffe zeroes every diff: unreached blobs still decay
            if item.tensor.grad is None:
                item.tensor.grad = torch.zeros_like(item.tensor)
        self._clip([item.tensor.grad for item in self.learnables])
        for item in self.learnables:
            diff = item.tensor.grad  # normalised and regularised in place, as Caffe's diff is
            if self.param.iter_size > 1:
                diff.div_(self.param.iter_size)
            self._regularize(diff, item)
            update = self.rule.update(diff, self.history[item.name], rate * item.lr_mult,
                                      self.param, self.iteration)
            item.tensor.sub_(update)
        self.iteration += 1
        return rate

    def _clip(self, grads: list[torch.Tensor]) -> None:
        limit = self.param.clip_gradients
        if limit < 0 or not grads:
            return
        norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
        if norm > limit:
            for grad in grads:
                grad.mul_(limit / norm)

    def _regularize(self, diff, item: Learnable) -> None:
        decay = self.param.weight_decay * item.decay_mult
        if decay:
            weight = item.tensor if self.param.regularization_type == "L2" else item.tensor.sign()
            diff.add_(weight, alpha=decay)

    # ---- state, for snapshots
    def state(self) -> dict[str, torch.Tensor]:
        return {f"{name}#{k}": tensor for name, tensors in self.history.items()
                for k, tensor in enumerate(tensors)}

    def load_state(self, tensors: dict[str, torch.Tensor], iteration: int) -> None:
        missing = [key for key in self.state() if key not in tensors]
        if missing:
            raise SolverError(f"the solver state lacks {len(missing)} history tensors "
                              f"(first: {missing[0]}); was it written for another net or solver?")
        with torch.no_grad():
            for key, tensor in self.state().items():
                tensor.copy_(tensors[key])
        self.iteration = iteration


def check_solver(param, path: str = "<solver>") -> list[Problem]:
    """What keeps a SolverParameter from training, all at once."""
    messages = []
    kind = solver_type(param)
    rule = UPDATE_RULES.get(kind)
    if rule is None:
        messages.append(f"unknown solver type '{kind}'; one of {', '.join(UPDATE_RULES)}")
    else:
        messages += rule.check(param)
    if param.lr_policy not in LR_POLICIES:
        messages.append(f"lr_policy '{param.lr_policy}' is not one of {', '.join(LR_POLICIES)}"
                        if param.lr_policy else "lr_policy is required "
                        f"({', '.join(LR_POLICIES)})")
    elif param.lr_policy == "step" and param.stepsize <= 0:
        messages.append("lr_policy 'step' needs a positive stepsize")
    elif param.lr_policy == "poly" and param.max_iter <= 0:
        messages.append("lr_policy 'poly' needs a positive max_iter")
    if list(param.stepvalue) != sorted(param.stepvalue):
        messages.append("stepvalue must increase")
    if param.iter_size < 1:
        messages.append(f"iter_size must be at least 1, not {param.iter_size}")
    if param.regularization_type not in ("L1", "L2"):
        messages.append(f"regularization_type must be L1 or L2, not '{param.regularization_type}'")
    return [Problem(SolverError, message, path) for message in messages]

