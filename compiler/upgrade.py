"""Upgrade legacy nets (V0, V1, legacy inputs, old BatchNorm) to the current format.

The rules are Caffe's own upgrader's (upgrade_proto.cpp), applied in its
order: V0 -> V1 (folding padding layers into the next layer), data
transformation fields -> transform_param, V1 -> V2, legacy `input` fields ->
an Input layer, then each layer type's own upgrade (BatchNorm's frozen `param`
specs dropped). Every step keeps
the source map pointing at the lines the layers came from.
"""
from __future__ import annotations

from netdef.errors import GraphError, Problem, SchemaError, ShapeError
from netdef.proto import netdef_pb2 as pb

from .layers import registry
from .textformat import SourceMap

V1 = pb.V1LayerParameter

# V1 enum name -> V2 type string (Caffe's UpgradeV1LayerType, plus fork enums).
V1_TYPE_NAMES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DATA": "Data", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
    "CROP": "Crop", "MULTI_STAGE_MEANFIELD": "MultiStageMeanfield",
    "IMAGE_SEG_DATA": "ImageSegData", "INTERP": "Interp", "SEG_ACCURACY": "SegAccuracy",
    "MAT_WRITE": "MatWrite", "PADDING": "PADDING",
}

# V0 type string -> V1 enum name.
V0_TYPES = {
    "accuracy": "ACCURACY", "bnll": "BNLL", "concat": "CONCAT", "conv": "CONVOLUTION",
    "data": "DATA", "dropout": "DROPOUT", "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN", "hdf5_data": "HDF5_DATA", "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL", "images": "IMAGE_DATA", "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT", "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS", "pool": "POOLING",
    "relu": "RELU", "sigmoid": "SIGMOID", "softmax": "SOFTMAX", "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT", "tanh": "TANH", "window_data": "WINDOW_DATA",
}

_DATA_LAYERS = {"DATA": "data_param", "IMAGE_DATA": "image_data_param",
                "WINDOW_DATA": "window_data_param"}
_CONV, _IP, _POOL = "convolution_param", "inner_product_param", "pooling_param"

# V0 field -> {V1 type: "param_message.field"}: where each flat V0 setting goes.
V0_FIELDS = {
    "num_output": {"CONVOLUTION": f"{_CONV}.num_output", "INNER_PRODUCT": f"{_IP}.num_output"},
    "biasterm": {"CONVOLUTION": f"{_CONV}.bias_term", "INNER_PRODUCT": f"{_IP}.bias_term"},
    "weight_filler": {"CONVOLUTION": f"{_CONV}.weight_filler",
                      "INNER_PRODUCT": f"{_IP}.weight_filler"},
    "bias_filler": {"CONVOLUTION": f"{_CONV}.bias_filler", "INNER_PRODUCT": f"{_IP}.bias_filler"},
    "pad": {"CONVOLUTION": f"{_CONV}.pad", "POOLING": f"{_POOL}.pad"},
    "kernelsize": {"CONVOLUTION": f"{_CONV}.kernel_size", "POOLING": f"{_POOL}.kernel_size"},
    "group": {"CONVOLUTION": f"{_CONV}.group"},
    "stride": {"CONVOLUTION": f"{_CONV}.stride", "POOLING": f"{_POOL}.stride"},
    "pool": {"POOLING": f"{_POOL}.pool"},
    "dropout_ratio": {"DROPOUT": "dropout_param.dropout_ratio"},
    "local_size": {"LRN": "lrn_param.local_size"},
    "alpha": {"LRN": "lrn_param.alpha"},
    "beta": {"LRN": "lrn_param.beta"},
    "k": {"LRN": "lrn_param.k"},
    "source": {"DATA": "data_param.source", "IMAGE_DATA": "image_data_param.source",
               "WINDOW_DATA": "window_data_param.source", "HDF5_DATA": "hdf5_data_param.source",
               "INFOGAIN_LOSS": "infogain_loss_param.source"},
    "scale": {t: f"{p}.scale" for t, p in _DATA_LAYERS.items()},
    "meanfile": {t: f"{p}.mean_file" for t, p in _DATA_LAYERS.items()},
    "batchsize": {**{t: f"{p}.batch_size" for t, p in _DATA_LAYERS.items()},
                  "HDF5_DATA": "hdf5_data_param.batch_size"},
    "cropsize": {t: f"{p}.crop_size" for t, p in _DATA_LAYERS.items()},
    "mirror": {t: f"{p}.mirror" for t, p in _DATA_LAYERS.items()},
    "rand_skip": {"DATA": "data_param.rand_skip", "IMAGE_DATA": "image_data_param.rand_skip"},
    "shuffle_images": {"IMAGE_DATA": "image_data_param.shuffle"},
    "new_height": {"IMAGE_DATA": "image_data_param.new_height"},
    "new_width": {"IMAGE_DATA": "image_data_param.new_width"},
    "concat_dim": {"CONCAT": "concat_param.concat_dim"},
    "det_fg_threshold": {"WINDOW_DATA": "window_data_param.fg_threshold"},
    "det_bg_threshold": {"WINDOW_DATA": "window_data_param.bg_threshold"},
    "det_fg_fraction": {"WINDOW_DATA": "window_data_param.fg_fraction"},
    "det_context_pad": {"WINDOW_DATA": "window_data_param.context_pad"},
    "det_crop_mode": {"WINDOW_DATA": "window_data_param.crop_mode"},
    "hdf5_output_param": {"HDF5_OUTPUT": "hdf5_output_param"},
}
_V0_DIRECT = {"name", "type", "blobs", "blobs_lr", "weight_decay"}


class _Upgrader:
    def __init__(self, net: pb.NetParameter, source_map: SourceMap):
        self.net = net
        self.source_map = source_map
        self.problems: list[Problem] = []

    def problem(self, kind, message, path, layer=None, layer_type=None):
        line = self.source_map.line_of(path)
        self.problems.append(Problem(kind, message, self.source_map.path, line, layer, layer_type))

    # ---------------------------------------------------------------- V0 -> V1
    def v0_to_v1(self) -> None:
        if not any(old.HasField("layer") for old in self.net.layers):
            return
        kept = self.fold_padding_layers()
        upgraded = []
        for index in kept:
            old = self.net.layers[index]
            if old.HasField("layer"):
                upgraded.append(self.v0_layer(old, index))
            else:
                upgraded.append(V1())
                upgraded[-1].CopyFrom(old)
        del self.net.layers[:]
        self.net.layers.extend(upgraded)
        self.layers_origin = {new: ("layers", old) for new, old in enumerate(kept)}

    def fold_padding_layers(self) -> list[int]:
        """Fold each V0 'padding' layer into the conv/pool layers it feeds."""
        padding_by_top = {}
        kept = []
        for index, old in enumerate(self.net.layers):
            v0 = old.layer
            if v0.type == "padding":
                if len(old.bottom) != 1 or len(old.top) != 1:
                    self.problem(GraphError, "a padding layer needs exactly one bottom and one top",
                                 ("layers", index, "layer"), v0.name, "padding")
                else:
                    padding_by_top[old.top[0]] = (old.bottom[0], v0.pad)
                continue
            for position, bottom in enumerate(old.bottom):
                if bottom not in padding_by_top:
                    continue
                if v0.type not in ("conv", "pool"):
                    self.problem(SchemaError, f"padding layer output '{bottom}' feeds a '{v0.type}' "
                                 "layer; padding can only be folded into conv or pool layers",
                                 ("layers", index, "layer"), v0.name, v0.type)
                    continue
                source, pad = padding_by_top[bottom]
                old.bottom[position] = source
                v0.pad = pad
            kept.append(index)
        return kept

    def v0_layer(self, old, index: int):
        v0 = old.layer
        new = V1()
        new.bottom.extend(old.bottom)
        new.top.extend(old.top)
        new.include.extend(old.include)
        new.exclude.extend(old.exclude)
        where = ("layers", index, "layer")
        type_name = V0_TYPES.get(v0.type)
        if type_name is None:
            self.problem(SchemaError, f"unknown V0 layer type '{v0.type}'", where + ("type",),
                         v0.name, v0.type)
            return new
        new.type = V1.LayerType.Value(type_name)
        new.name = v0.name
        new.blobs.extend(v0.blobs)
        new.blobs_lr.extend(v0.blobs_lr)
        new.weight_decay.extend(v0.weight_decay)
        for fd, value in v0.ListFields():
            if fd.name in _V0_DIRECT:
                continue
            target = V0_FIELDS.get(fd.name, {}).get(type_name)
            if target is None:
                self.problem(SchemaError, f"V0 field '{fd.name}' does not apply to a '{v0.type}' layer",
                             where + (fd.name,), v0.name, v0.type)
                continue
            _assign(new, target, value)
        return new

    # ------------------------------------------------- data transformation
    def data_transformation(self) -> None:
        for old in self.net.layers:
            param_name = _DATA_LAYERS.get(V1.LayerType.Name(old.type))
            if param_name and old.HasField(param_name):
                _move_transform_fields(getattr(old, param_name), old.transform_param)

    # ---------------------------------------------------------------- V1 -> V2
    def v1_to_v2(self) -> None:
        if not self.net.layers:
            return
        origins = getattr(self, "layers_origin", {i: ("layers", i) for i in range(len(self.net.layers))})
        for old in self.net.layers:
            self.net.layer.add().CopyFrom(_v1_layer(old))
        del self.net.layers[:]
        self.source_map.aliases = {("layer", i): origin for i, origin in origins.items()}

    # ---------------------------------------------------------------- inputs
    def inputs(self) -> None:
        net = self.net
        if not net.input:
            if net.input_shape or net.input_dim:
                self.problem(ShapeError, "input_shape/input_dim given without any 'input' name",
                             ("input_dim", 0) if net.input_dim else ("input_shape", 0))
            return
        layer = pb.LayerParameter(name="input", type="Input")
        layer.top.extend(net.input)
        has_shape = bool(net.input_shape)
        if net.input_shape:
            if len(net.input_shape) != len(net.input):
                self.problem(ShapeError, f"{len(net.input)} input(s) but {len(net.input_shape)} "
                             "input_shape entries; give one per input", ("input_shape", 0))
            layer.input_param.shape.extend(net.input_shape)
        elif net.input_dim:
            if len(net.input_dim) != 4 * len(net.input):
                self.problem(ShapeError, f"{len(net.input)} input(s) need {4 * len(net.input)} "
                             f"input_dim values (N, C, H, W each), found {len(net.input_dim)}",
                             ("input_dim", 0))
            else:
                for i in range(len(net.input)):
                    layer.input_param.shape.add().dim.extend(net.input_dim[4 * i:4 * i + 4])
        layers = [layer] + list(net.layer)
        del net.layer[:]
        net.layer.extend(layers)
        net.ClearField("input")
        net.ClearField("input_shape")
        net.ClearField("input_dim")
        origins = {0: ("input", 0)}
        origins.update({i + 1: ("layer", i) for i in range(len(layers) - 1)})
        self.source_map.remap_layers(origins)
        self.alias_input_shapes(layer, has_shape)

    def alias_input_shapes(self, layer, has_shape: bool) -> None:
        """Point each dim of the new Input layer at the legacy field it came from."""
        for i, shape in enumerate(layer.input_param.shape):
            new = ("layer", 0, "input_param", "shape", i)
            if has_shape:
                self.source_map.aliases[new] = ("input_shape", i)
            else:
                for j in range(len(shape.dim)):
                    self.source_map.aliases[new + ("dim", j)] = ("input_dim", 4 * i + j)

    # ---------------------------------------------------------------- per type
    def layer_params(self) -> None:
        """Let each type's rule drop or move its own legacy settings (e.g. BatchNorm's)."""
        rules = registry()
        for layer in self.net.layer:
            rule = rules.get(layer.type)
            if rule is not None:
                rule.upgrade(layer)


def _v1_layer(old) -> pb.LayerParameter:
    new = pb.LayerParameter()
    for fd, value in old.ListFields():
        name = fd.name
        if name == "type":
            new.type = V1_TYPE_NAMES[V1.LayerType.Name(value)]
        elif name in ("param", "blob_share_mode", "blobs_lr", "weight_decay"):
            continue
        elif fd.is_repeated:
            getattr(new, name).extend(value)
        elif fd.message_type is not None:
            getattr(new, name).CopyFrom(value)
        else:
            setattr(new, name, value)
    specs = max(len(old.param), len(old.blob_share_mode), len(old.blobs_lr), len(old.weight_decay))
    for i in range(specs):
        spec = new.param.add()
        if i < len(old.param):
            spec.name = old.param[i]
        if i < len(old.blob_share_mode):
            spec.share_mode = old.blob_share_mode[i]
        if i < len(old.blobs_lr):
            spec.lr_mult = old.blobs_lr[i]
        if i < len(old.weight_decay):
            spec.decay_mult = old.weight_decay[i]
    return new


def _assign(message, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        message = getattr(message, part)
    fd = message.DESCRIPTOR.fields_by_name[leaf]
    if fd.message_type is not None:
        getattr(message, leaf).CopyFrom(value)
    elif fd.is_repeated:
        getattr(message, leaf).append(value)
    else:
        setattr(message, leaf, value)


def _move_transform_fields(param, transform) -> None:
    for name in ("scale", "mean_file", "crop_size", "mirror"):
        if param.HasField(name):
            setattr(transform, name, getattr(param, name))
            param.ClearField(name)


def upgrade(net: pb.NetParameter, source_map: SourceMap) -> list[Problem]:
    """Upgrade `net` in place to the current format; returns the problems found."""
    upgrader = _Upgrader(net, source_map)
    if net.layer and net.layers:
        # Point at whichever format starts second: that block breaks the file.
        first = [("layer", 0), ("layers", 0)]
        first.sort(key=lambda path: source_map.line_of(path) or 0)
        upgrader.problem(SchemaError, "the file mixes 'layer' (current) and 'layers' (V1) blocks; "
                         "use one format", first[1])
        return upgrader.problems
    upgrader.v0_to_v1()
    upgrader.data_transformation()
    upgrader.v1_to_v2()
    upgrader.inputs()
    upgrader.layer_params()
    return upgrader.problems


def net_format(net: pb.NetParameter) -> str:
    """'V0', 'V1' or 'V2': the format of a net as parsed, before upgrade."""
    if any(old.HasField("layer") for old in net.layers):
        return "V0"
    return "V1" if net.layers else "V2"
