"""Authoring nets in Python, in pycaffe's NetSpec dialect, without Caffe.

A script written for pycaffe runs after changing only its imports:

    import netdef.spec as caffe
    from netdef.spec import layers as L, params as P
    from netdef.spec import crop

    n = caffe.NetSpec()
    n.data, n.label = L.Python(module="voc_layers", layer="VOCSegDataLayer", ntop=2,
                               param_str="...")
    n.conv1 = L.Convolution(n.data, kernel_size=3, num_output=64, pad=100,
                            param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)])
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.pool1 = L.Pooling(n.relu1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    ...
    n.score = crop(n.upscore, n.data)
    text = str(n.to_proto())

Naming follows pycaffe: a top takes the NetSpec attribute it was assigned to, a
layer its first top's name, anything unnamed `<Type><count>`. A keyword ending in
`param` sets that LayerParameter field; another keyword goes into the layer
type's own `<type>_param` (found from the schema; netdef also knows the params a
type reads, so Deconvolution's `num_output=` lands in convolution_param), else
onto the LayerParameter itself (`loss_weight`, `include`...). Enum values come
from `params` (`P.Pooling.MAX`) or may be written by name ("MAX").
`crop(a, b)` aligns `a` to `b` with offsets solved from netdef's coordinate maps.
"""
from __future__ import annotations

from collections import Counter, OrderedDict

from .errors import AlignmentError
from .proto import netdef_pb2 as pb

TRAIN, TEST = pb.TRAIN, pb.TEST
LayerParameter, NetParameter = pb.LayerParameter, pb.NetParameter


class Top:
    """One output of a layer call; assign it to a NetSpec attribute to name it."""

    def __init__(self, call: "LayerCall", index: int):
        self.fn, self.n = call, index  # pycaffe's attribute names, kept for scripts that peek

    def to_proto(self) -> pb.NetParameter:
        return to_proto(self)

    def _emit(self, built, names, counts):
        self.fn._emit(built, names, counts)


class LayerCall:
    """A layer of some type applied to bottoms, with its keyword settings."""

    def __init__(self, type_name: str, bottoms: tuple, settings: dict):
        for position, bottom in enumerate(bottoms):
            if not isinstance(bottom, Top):
                raise TypeError(f"{type_name} input {position} is a {type(bottom).__name__}, "
                                "not a Top (the result of another layer)")
        settings = dict(settings)
        self.ntop = settings.pop("ntop", 1)
        self.in_place = settings.pop("in_place", False)
        self.type_name, self.inputs, self.params = type_name, tuple(bottoms), settings
        self.tops = tuple(Top(self, index) for index in range(self.ntop))

    def _top_name(self, top: Top, names: dict, counts: Counter) -> str:
        if top not in names:
            counts[self.type_name] += 1
            names[top] = f"{self.type_name}{counts[self.type_name]}"
        return names[top]

    def _layer_name(self, names: dict, counts: Counter) -> str:
        if self not in names:
            if self.tops:
                names[self] = self._top_name(self.tops[0], names, counts)
            else:
                counts[self.type_name] += 1
                names[self] = f"{self.type_name}{counts[self.type_name]}"
        return names[self]

    def _emit(self, built: dict, names: dict, counts: Counter) -> None:
        """Add this layer (after its bottoms' layers) to `built`, once."""
        if self in built:
            return
        bottoms = []
        for bottom in self.inputs:
            bottom._emit(built, names, counts)
            bottoms.append(built[bottom.fn].top[bottom.n])
        layer = pb.LayerParameter(type=self.type_name, bottom=bottoms)
        if self.in_place:
            layer.top.extend(bottoms)
        else:
            layer.top.extend(self._top_name(top, names, counts) for top in self.tops)
        layer.name = self._layer_name(names, counts)
        for key, value in self.params.items():
            _assign(_home(layer, key), key, value)
        built[self] = layer


def _home(layer: pb.LayerParameter, key: str):
    """Where a keyword goes: a `*param` field of the layer, the type's own parameter message
    (or the first of the params the type reads that has the field), else the layer."""
    if key.endswith("param"):
        return layer
    for field_name in _param_fields(layer.type):
        message = getattr(layer, field_name)
        if key in message.DESCRIPTOR.fields_by_name:
            return message
    return layer


def _param_fields(type_name: str) -> list[str]:
    """The type's `<type>_param` by message name (pycaffe's rule), then the ones netdef's
    rule for the type reads."""
    own = [f.name for f in pb.LayerParameter.DESCRIPTOR.fields
           if f.message_type is not None and f.message_type.name == type_name + "Parameter"]
    from .compiler.layers import registry
    rule = registry().get(type_name)
    return own + [name for name in (rule.params if rule else ()) if name not in own]


def _assign(message, name: str, value) -> None:
    field = message.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        raise AttributeError(f"{message.DESCRIPTOR.name} has no field '{name}'")
    repeated = field.is_repeated
    if repeated:
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        container = getattr(message, name)
        for item in values:
            if field.message_type is not None:
                _fill(container.add(), item)
            else:
                container.append(_scalar(field, item))
    elif field.message_type is not None:
        _fill(getattr(message, name), value)
    else:
        setattr(message, name, _scalar(field, value))


def _fill(message, settings) -> None:
    if not isinstance(settings, dict):
        raise TypeError(f"{message.DESCRIPTOR.name} takes a dict of its fields, not "
                        f"{type(settings).__name__}")
    message.SetInParent()
    for key, value in settings.items():
        _assign(message, key, value)


def _scalar(field, value):
    if field.enum_type is not None and isinstance(value, str):
        try:
            return field.enum_type.values_by_name[value].number
        except KeyError:
            raise ValueError(f"'{value}' is not a value of {field.enum_type.name} "
                             f"({', '.join(field.enum_type.values_by_name)})") from None
    return value


def to_proto(*tops) -> pb.NetParameter:
    """A NetParameter holding these tops and everything they depend on."""
    built: dict = OrderedDict()
    names, counts = {}, Counter()
    for top in tops:
        top._emit(built, names, counts)
    return pb.NetParameter(layer=list(built.values()))


class NetSpec:
    """Tops by name, in assignment order; `to_proto()` names them after their attributes."""

    def __init__(self):
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name, value):
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setitem__(self, name, value):
        self.tops[name] = value

    def __getitem__(self, name):
        return self.tops[name]

    def __delitem__(self, name):
        del self.tops[name]

    def keys(self):
        return list(self.tops.keys())

    def vals(self):
        return list(self.tops.values())

    def to_proto(self) -> pb.NetParameter:
        names = {top: name for name, top in self.tops.items()}
        built: dict = OrderedDict()
        counts = Counter()
        for top in self.tops.values():
            top._emit(built, names, counts)
        return pb.NetParameter(layer=list(built.values()))


class _Layers:
    """`L.Convolution(bottom, ...)`: one Top, a tuple of them (ntop > 1), or the call (ntop 0)."""

    def __getattr__(self, type_name: str):
        def make(*bottoms, **settings):
            call = LayerCall(type_name, bottoms, settings)
            if call.ntop == 0:
                return call
            return call.tops[0] if call.ntop == 1 else call.tops
        return make


class _Params:
    """`P.Pooling.MAX`: the enum value from PoolingParameter in the schema."""

    def __getattr__(self, name: str):
        message = getattr(pb, name + "Parameter")

        class _Enums:
            def __getattr__(self, value_name):
                return getattr(message, value_name)
        return _Enums()


layers = _Layers()
params = _Params()


def crop(top_from: Top, top_to: Top) -> Top:
    """A Crop of `top_from` to `top_to`'s size whose offsets put their units on the same
    input coordinates, solved from netdef's coordinate maps (as pycaffe's coord_map.crop)."""
    offsets = _solved_offsets(top_from, top_to)
    return layers.Crop(top_from, top_to, crop_param=dict(axis=2, offset=offsets))


def _solved_offsets(top_from: Top, top_to: Top) -> list[int]:
    from .compiler.analysis import check_net

    built: dict = OrderedDict()
    names, counts = {}, Counter()
    for top in (top_from, top_to):
        top._emit(built, names, counts)
    probe = pb.NetParameter(layer=list(built.values()))
    bottoms = [built[top.fn].top[top.n] for top in (top_from, top_to)]
    probe.layer.add(name="crop-probe", type="Crop", bottom=bottoms, top=["crop-probe"])
    for phase in ("TRAIN", "TEST"):  # a layer may be included in one phase only
        net, _ = check_net(probe, phase=phase)
        layer = next((layer for layer in net.layers if layer.name == "crop-probe"), None)
        if layer is not None and layer.solution.get("offset"):
            offsets = layer.solution["offset"][-2:]
            return offsets[:1] if len(set(offsets)) == 1 else offsets
    raise AlignmentError(f"crop(): the coordinate maps cannot align {bottoms[0]} to {bottoms[1]} "
                         "(no common input, a scale mismatch, or a fractional offset)")


class Layer:
    """Base of pycaffe Python layers (`class MyData(caffe.Layer)`), for user layers that
    netdef runs with --allow-python-layers where Caffe is not installed."""

    param_str = ""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        raise NotImplementedError

    def backward(self, top, propagate_down, bottom):
        pass
