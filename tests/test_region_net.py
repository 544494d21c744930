"""models/region_net.prototxt: generated, checked in both phases, and the numbers of Table 4.1
visible through `netdef info --json`."""
from __future__ import annotations

import importlib.util
import json

import netdef

from .conftest import ROOT

MODELS = ROOT / "models"


def test_region_net_file_is_what_its_generator_writes():
    spec = importlib.util.spec_from_file_location("region_models", MODELS / "region_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (MODELS / "region_net.prototxt").read_text() == module.region_net()


def test_info_json_shows_the_five_pathways(cli):
    code, out, _ = cli("info", MODELS / "region_net.prototxt", "--json")
    assert code == 0
    report = json.loads(out)
    transposes = [blob for blob in report["blobs"] if blob["name"].startswith("transpose_")]
    assert [blob["shape"][1] for blob in transposes] == [196, 196, 324, 324, 324]
    assert [blob["rf"]["data"]["stride"] for blob in transposes] == [[s, s] for s in
                                                                     (2, 4, 8, 16, 32)]
    # B2: cell centres at S i + (S - 1) / 2 (fc6 padded by 3 stays aligned)
    assert [blob["rf"]["data"]["offset"][0] for blob in transposes] == [0.5, 1.5, 3.5, 7.5, 15.5]
    grids = [tuple(blob["shape"][2:]) for blob in transposes]
    assert sum(h * w for h, w in grids) == 102_300  # B1's region count for 640x480
    assert not report["warnings"]


def test_info_table_shows_each_pathways_stride_window_and_field(cli):
    code, out, _ = cli("info", MODELS / "region_net.prototxt")
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.startswith("transpose_")]
    # blob, shape, rf, stride, offset, producer (RegionTranspose: w W)
    assert [(row[3], row[-1]) for row in rows] == [
        ("2", "14)"), ("4", "14)"), ("8", "18)"), ("16", "18)"), ("32", "18)")]
    # B3: the transpose widens each region's support by w - 2 cells of its stride
    features = {line.split()[0]: int(line.split()[2]) for line in out.splitlines()[1:]
                if line.split()[2].isdigit()}
    for row, (feature, stride, window) in zip(rows, [("conv2_2", 2, 14), ("conv3_3", 4, 14),
                                                      ("conv4_3", 8, 18), ("conv5_3", 16, 18),
                                                      ("fc6", 32, 18)]):
        kernel = 5 if window == 14 else 9
        assert int(row[2]) == features[feature] + stride * (kernel - 1) + stride * (window - 2)


def test_both_phases_check_and_lower():
    for phase in ("TRAIN", "TEST"):
        assert not [p for p in netdef.check(MODELS / "region_net.prototxt", phase=phase)]
        model = netdef.load(MODELS / "region_net.prototxt", phase=phase, device="meta")
        kinds = {type(m).__name__ for m in model.modules()}
        assert "RegionTranspose" in kinds
        assert ("RegionLogisticLoss" if phase == "TRAIN" else "RegionNMS") in kinds


def test_draw_shows_five_branches_into_nms(cli, tmp_path):
    """Each pathway is its own chain feature -> regions -> transpose -> mask, and the five
    masks meet only at the NMS, in pathway order (numbered edges)."""
    import re

    dot = tmp_path / "region_net.dot"
    code, _, _ = cli("draw", MODELS / "region_net.prototxt", "-o", str(dot))
    assert code == 0
    text = dot.read_text()
    nms = re.search(r'(L\d+) \[[^\n]*<B>nms</B>', text).group(1)
    into = re.findall(rf'"B:(\w+)" -> {nms} \[taillabel="(\d)"', text)
    assert into == [(f"mask_{p}", str(k)) for k, p in
                    enumerate(("conv2_2", "conv3_3", "conv4_3", "conv5_3", "fc6"))]
    for p in ("conv2_2", "conv3_3", "conv4_3", "conv5_3", "fc6"):
        assert re.search(rf'"B:{p}" -> L\d+', text)  # the feature feeds its pathway
        assert f'"B:regions_{p}" -> ' in text and f'"B:transpose_{p}" -> ' in text
