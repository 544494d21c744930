"""netdef.spec: pycaffe's NetSpec dialect.

The FCN-8s script below is written as the FCN project writes its net.py files
(conv_relu / max_pool helpers, crop()); only its imports differ from pycaffe.
The net it builds must equal the published voc-fcn8s/train.prototxt, crop
offsets 5, 9 and 31 included, which netdef solves from its coordinate maps.
"""
import pytest

import netdef
import netdef.spec as caffe
from netdef.errors import AlignmentError
from netdef.spec import crop
from netdef.spec import layers as L
from netdef.spec import params as P
from tests.conftest import ROOT

CORPUS = ROOT.parent / "shared" / "corpus" / "shelhamer+fcn.berkeleyvision.org"


def conv_relu(bottom, nout, ks=3, stride=1, pad=1):
    conv = L.Convolution(bottom, kernel_size=ks, stride=stride, num_output=nout, pad=pad,
                         param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)])
    return conv, L.ReLU(conv, in_place=True)


def max_pool(bottom, ks=2, stride=2):
    return L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=ks, stride=stride)


def fcn8s():
    n = caffe.NetSpec()
    # the published file's param_str was printed from a Python 2 dict; this order matches it
    pydata_params = {"sbdd_dir": "../data/sbdd/dataset", "seed": 1337, "split": "train",
                     "mean": (104.00699, 116.66877, 122.67892)}
    n.data, n.label = L.Python(module="voc_layers", layer="SBDDSegDataLayer", ntop=2,
                               param_str=str(pydata_params))
    n.conv1_1, n.relu1_1 = conv_relu(n.data, 64, pad=100)
    n.conv1_2, n.relu1_2 = conv_relu(n.relu1_1, 64)
    n.pool1 = max_pool(n.relu1_2)
    n.conv2_1, n.relu2_1 = conv_relu(n.pool1, 128)
    n.conv2_2, n.relu2_2 = conv_relu(n.relu2_1, 128)
    n.pool2 = max_pool(n.relu2_2)
    n.conv3_1, n.relu3_1 = conv_relu(n.pool2, 256)
    n.conv3_2, n.relu3_2 = conv_relu(n.relu3_1, 256)
    n.conv3_3, n.relu3_3 = conv_relu(n.relu3_2, 256)
    n.pool3 = max_pool(n.relu3_3)
    n.conv4_1, n.relu4_1 = conv_relu(n.pool3, 512)
    n.conv4_2, n.relu4_2 = conv_relu(n.relu4_1, 512)
    n.conv4_3, n.relu4_3 = conv_relu(n.relu4_2, 512)
    n.pool4 = max_pool(n.relu4_3)
    n.conv5_1, n.relu5_1 = conv_relu(n.pool4, 512)
    n.conv5_2, n.relu5_2 = conv_relu(n.relu5_1, 512)
    n.conv5_3, n.relu5_3 = conv_relu(n.relu5_2, 512)
    n.pool5 = max_pool(n.relu5_3)
    n.fc6, n.relu6 = conv_relu(n.pool5, 4096, ks=7, pad=0)
    n.drop6 = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.fc7, n.relu7 = conv_relu(n.drop6, 4096, ks=1, pad=0)
    n.drop7 = L.Dropout(n.relu7, dropout_ratio=0.5, in_place=True)
    n.score_fr = L.Convolution(n.drop7, num_output=21, kernel_size=1, pad=0,
                               param=[dict(lr_mult=1, decay_mult=1),
                                      dict(lr_mult=2, decay_mult=0)])
    n.upscore2 = L.Deconvolution(n.score_fr, convolution_param=dict(
        num_output=21, kernel_size=4, stride=2, bias_term=False), param=[dict(lr_mult=0)])
    n.score_pool4 = L.Convolution(n.pool4, num_output=21, kernel_size=1, pad=0,
                                  param=[dict(lr_mult=1, decay_mult=1),
                                         dict(lr_mult=2, decay_mult=0)])
    n.score_pool4c = crop(n.score_pool4, n.upscore2)
    n.fuse_pool4 = L.Eltwise(n.upscore2, n.score_pool4c, operation=P.Eltwise.SUM)
    n.upscore_pool4 = L.Deconvolution(n.fuse_pool4, convolution_param=dict(
        num_output=21, kernel_size=4, stride=2, bias_term=False), param=[dict(lr_mult=0)])
    n.score_pool3 = L.Convolution(n.pool3, num_output=21, kernel_size=1, pad=0,
                                  param=[dict(lr_mult=1, decay_mult=1),
                                         dict(lr_mult=2, decay_mult=0)])
    n.score_pool3c = crop(n.score_pool3, n.upscore_pool4)
    n.fuse_pool3 = L.Eltwise(n.upscore_pool4, n.score_pool3c, operation=P.Eltwise.SUM)
    n.upscore8 = L.Deconvolution(n.fuse_pool3, convolution_param=dict(
        num_output=21, kernel_size=16, stride=8, bias_term=False), param=[dict(lr_mult=0)])
    n.score = crop(n.upscore8, n.data)
    n.loss = L.SoftmaxWithLoss(n.score, n.label,
                               loss_param=dict(normalize=False, ignore_label=255))
    return n.to_proto()


def test_fcn8s_in_the_fcn_style_equals_the_published_file():
    built = fcn8s()
    published = netdef.parse(str(CORPUS / "voc-fcn8s" / "train.prototxt"))
    assert netdef.parse(str(built)) == published
    offsets = {layer.name: list(layer.crop_param.offset) for layer in built.layer
               if layer.type == "Crop"}
    assert offsets == {"score_pool4c": [5], "score_pool3c": [9], "score": [31]}


def test_naming_in_place_and_autonames():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    conv = L.Convolution(n.data, num_output=4, kernel_size=3)  # never named: autonamed
    n.out = L.ReLU(conv, in_place=True)
    n.silence = L.Silence(n.out, ntop=0)
    net = n.to_proto()
    assert [(layer.name, list(layer.bottom), list(layer.top)) for layer in net.layer] == [
        ("data", [], ["data"]), ("Convolution1", ["data"], ["Convolution1"]),
        ("out", ["Convolution1"], ["Convolution1"]), ("silence", ["Convolution1"], [])]
    assert list(net.layer[0].input_param.shape[0].dim) == [1, 3, 8, 8]


def test_keywords_find_their_message():
    n = caffe.NetSpec()
    n.data, n.label = L.DummyData(ntop=2, shape=[dict(dim=[2, 3, 4, 4]), dict(dim=[2])])
    n.ip = L.InnerProduct(n.data, num_output=5, weight_filler=dict(type="xavier"),
                          loss_weight=0.5, include=dict(phase=caffe.TRAIN))
    n.pool = L.Pooling(n.data, pool="AVE", global_pooling=True)
    n.up = L.Deconvolution(n.data, num_output=3, kernel_size=2, stride=2)
    layers = {layer.name: layer for layer in n.to_proto().layer}
    assert layers["ip"].inner_product_param.weight_filler.type == "xavier"
    assert list(layers["ip"].loss_weight) == [0.5] and layers["ip"].include[0].phase == caffe.TRAIN
    assert layers["pool"].pooling_param.pool == P.Pooling.AVE
    assert layers["up"].convolution_param.num_output == 3  # netdef's rule says where
    with pytest.raises(AttributeError, match="no field 'kernal_size'"):
        L.Convolution(n.data, kernal_size=3).to_proto()
    with pytest.raises(TypeError, match="not a Top"):
        L.ReLU("data")


def test_crop_of_unrelated_blobs_is_an_alignment_error():
    n = caffe.NetSpec()
    n.a = L.Input(shape=dict(dim=[1, 1, 8, 8]))
    n.b = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    with pytest.raises(AlignmentError):
        crop(n.a, n.b)
