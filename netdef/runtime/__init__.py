"""Torch modules for the Caffe layers whose semantics no stock module has, by family.

Compiled models import this package and torch only, and name every module as
`netdef.runtime.X`, so this file re-exports each family's modules. Each class keeps Caffe's
blob layout for its tensors, so weights copy in without transposes. The CRF-RNN head and the
region net's layers live in `crf` and `regions`, the detectors' in `detection`.
"""
from ._caffe import FLT_MIN, per_item  # noqa: F401
from .pointwise import (  # noqa: F401
    Power, Exp, Log, AbsVal, Threshold, Clip, Swish, UnscaledDropout,
)
from .normalization import (  # noqa: F401
    CaffeBatchNorm, Scale, Bias, BN, WithinChannelLRN, MVN, ChannelAffine, Normalize,
)
from .pooling import CaffePool, StochasticPool, Unpool, SPP, UnPooling  # noqa: F401
from .shape import (  # noqa: F401
    Eltwise, Concat, Split, Slice, Crop, Flatten, Reshape, Interp, ArgMax, Reduction,
    Tile, BatchReindex, Filter, Permute, ShuffleChannel, Reorg, Axpy, Padding, ParseOutput,
)
from .linear import (  # noqa: F401
    InnerProduct, Embed, Im2col, Parameter, PackedConv2d, ConvReLU, ConvAdd, ConvAddReLU,
)
from .loss import (  # noqa: F401
    normalizer, SoftmaxWithLoss, SigmoidCrossEntropyLoss, EuclideanLoss, HingeLoss,
    MultinomialLogisticLoss, InfogainLoss, ContrastiveLoss, Accuracy, SmoothL1Loss,
)
from .recurrent import RNN, lstm_unit, LSTM, LSTMUnit  # noqa: F401
from .roi import ROIPooling, PSROIPooling  # noqa: F401
from .detection import PriorBox, DetectionOutput, Proposal, ImageInfo  # noqa: F401
from .multibox import MultiBoxLoss  # noqa: F401
