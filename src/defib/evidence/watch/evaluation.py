"""Evidence about the script's own evaluation after training: a module evaluated with the weights it was born with.

A script that saves its model and scores a copy rebuilt from the saved folder
can forget to load part of it (a head kept outside the model, saved with
``torch.save(head.state_dict())``): the rebuilt module keeps its random
initialisation while training looked healthy. Three facts, each cheap, say so
without judging any output:

* the module's parameters were created after the watched optimizer's first
  step (a global parameter-registration hook records them only from then on),
  so it is not the object that trained;
* none of them was written since its initialisation: a parameter's version
  counter counts its in-place writes. A module's ``__init__`` registers each
  parameter empty and writes it once (``reset_parameters``); the user's own
  ``nn.init`` calls on it count as initialisation too. Any further write
  (a ``load_state_dict`` copy, ``copy_``, an optimizer step) is a load. A
  parameter that is never written after its registration was assigned whole
  (``load_state_dict(assign=True)``, transformers' loading): loaded as well,
  and so is every parameter of a model ``from_pretrained`` returns (a head
  written as ``nn.Parameter(torch.randn(...))`` is missed likewise: it has
  no initialising write to tell it from a loaded tensor);
* the watched optimizer trained a parameter of each one's shape (the module
  is a rebuilt copy of a trained part), and none of those trained tensors has
  the same values (a ``.data.copy_`` load, which the counter misses).

The last check reads values, so it is put off with :meth:`Watcher.later`.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

from defib.evidence.callsite import where_here
from defib.evidence.watch.guard import Part, guarded

MAX_FRESH = 4096     # parameters remembered after training (bounds memory in a script that builds many models)
MAX_COMPARED = 4     # parameters of one evaluated module compared with the trained ones
MAX_CANDIDATES = 16  # trained tensors of the same shape each is compared with
INIT_WRITES = 1      # in-place writes of a parameter by its module's own initialisation (reset_parameters)


class EvaluationEvidence(Part):
    """Parameters created after training began, and the evaluation forwards of the modules that hold them."""

    def __init__(self, watcher: Any):
        super().__init__(watcher)
        # id(param) -> [param, where its module was built, its version counter once initialised]
        self._fresh: dict[int, list] = {}
        self._judged: weakref.WeakSet = weakref.WeakSet()  # the modules already looked at

    def watching(self) -> bool:
        """Parameters were created after training began: an evaluation forward may hold some."""
        return bool(self._fresh)

    def param_registered(self, module: nn.Module, name: str, param: Any) -> None:
        """A parameter was registered on a module (global hook): remember it if training has begun."""
        if self.w.s.step > 0 and isinstance(param, nn.Parameter) and len(self._fresh) < MAX_FRESH:
            self._registered(param)

    @guarded
    def _registered(self, param: nn.Parameter) -> None:
        self._fresh[id(param)] = [weakref.ref(param), where_here(skip=3), param._version + INIT_WRITES]
        # a module built after training may be called only at top level in an evaluation: hooks on every module
        # until the next step, as for a new Hugging Face model (forward.py)
        self.w.forward.widen()

    def init_called(self, tensor: Any) -> None:
        """The user's ``nn.init`` call wrote ``tensor``: if it is a new parameter, that write initialised it."""
        known = self._fresh.get(id(tensor))
        if known is not None and known[0]() is tensor:
            known[2] = tensor._version

    @guarded
    def loaded(self, model: nn.Module) -> None:
        """``from_pretrained`` returned ``model``: its parameters hold saved weights, whatever their counters say."""
        for p in model.parameters():
            self._fresh.pop(id(p), None)

    @guarded
    def evaluation_call(self, module: nn.Module) -> None:
        """``module`` ran at top level without gradients or in eval mode, after training began."""
        if module in self._judged:
            return
        self._judged.add(module)
        params = list(module.parameters())
        opt = self.w.optim.main()
        if not params or opt is None:
            return
        trained = [p for g in opt.param_groups for p in g["params"]]
        trained_ids = {id(p) for p in trained}
        where = None
        for p in params:
            known = self._fresh.get(id(p))
            if known is None or known[0]() is not p or p._version != known[2] or id(p) in trained_ids:
                return
            where = where or known[1]
        pairs = []
        for p in params[:MAX_COMPARED]:
            same = [q.detach() for q in trained if q.shape == p.shape][:MAX_CANDIDATES]
            if not same:
                return
            pairs.append((p.detach(), same))
        self.w.later(self._judge, type(module).__name__, sum(p.numel() for p in params), where, pairs)

    def _judge(self, name: str, numel: int, where: Any, pairs: list) -> None:
        if any(torch.equal(p, q) for p, same in pairs for q in same):
            return  # the trained values were copied in: loaded after all
        m = self.w.s.model
        if m is not None and m.eval_untrained is None:
            m.eval_untrained = {"module": name, "params": numel}
            m.eval_untrained_where = where
