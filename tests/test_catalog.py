from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from trnlab import catalog
from trnlab._paths import data_dir
from trnlab.catalog.records import PRECISIONS
from trnlab.cli import main
from trnlab.errors import CatalogError

CAT = catalog.default()
REQUIRED_CHIPS = ["trn1", "inf2", "trn2", "trn3", "trn4", "a100-sxm-80gb", "h100-sxm", "h200",
                  "b200", "b300", "gb200", "gb300", "tpu-v5p", "tpu-v6e", "tpu-v7", "mi300x",
                  "mi355x"]
REQUIRED_SYSTEMS = ["trn1-32xl", "trn2-48xl", "trn2-ultraserver", "trn3-ultraserver",
                    "trn3-ultraserver-64", "dgx-a100", "dgx-h100", "dgx-h200", "dgx-b200",
                    "gb200-nvl72", "gb300-nvl72", "tpu-v5p-pod", "tpu-v6e-pod", "tpu-v7-pod"]


def _vocabulary(column: str) -> set[str]:
    """Ids of the case schema (data/measurements/SCHEMA.md, machine-readable vocab block)."""
    text = (data_dir() / "measurements" / "SCHEMA.md").read_text()
    block = text.split("```vocab", 1)[1].split("```", 1)[0]
    line = next(ln for ln in block.splitlines() if ln.startswith(f"{column}:"))
    return set(line.split(":", 1)[1].split())


def test_required_entries_exist():
    assert set(REQUIRED_CHIPS) <= set(CAT.chips)
    assert set(REQUIRED_SYSTEMS) <= set(CAT.systems)
    assert CAT.networks and CAT.prices and CAT.facilities


def test_ids_come_from_the_case_schema():
    assert set(CAT.chips) <= _vocabulary("chip")
    # systems outside the schema vocabulary are the ones it lacks: the second Trn3 form, hgx-b300,
    # the projected Trn4 rack, the Vera Rubin rack, the mixed Trn4 + Rubin domain, the UALink Trn4,
    # and the two rentals whose prices must not be filed under another system (trn1n.32xlarge,
    # p4d.24xlarge with the A100 40 GB)
    extra = set(CAT.systems) - _vocabulary("system")
    assert extra <= {"trn3-ultraserver-64", "hgx-b300", "trn4-nvl72", "vera-rubin-nvl72",
                     "trn4-rubin-nvl72", "trn4-ualink", "trn1n-32xl", "hgx-a100-40gb"}


@pytest.mark.parametrize("entry", [*CAT.chips.values(), *CAT.systems.values(),
                                   *CAT.networks.values(), *CAT.prices.values(),
                                   *CAT.facilities.values()], ids=lambda e: e.id)
def test_every_number_has_unit_status_source(entry):
    assert entry.fields
    for name, f in entry.fields.items():
        assert f.unit and f.status in ("announced", "measured", "projected", "derived"), name
        assert f.sources and all(s in CAT.sources for s in f.sources), name
        if f.status == "projected":
            assert f.range and f.note, f"{entry.id}.{name}: projected without range/reasoning"
            assert f.range[0] <= f.value <= f.range[1]
        assert (math.isfinite(f.si) and f.si > 0) or name == "system_overhead"


def test_spot_values():
    trn3, trn2 = catalog.chip("trn3"), catalog.chip("trn2")
    assert trn3.peak_flops["mxfp8"] == pytest.approx(2517e12)
    assert trn3.peak("mxfp4") == trn3.peak("mxfp8")  # MXFP4 runs at the MXFP8 rate
    assert trn3.peak("fp4") == pytest.approx(2517e12)
    assert trn3.peak("bf16") == pytest.approx(671e12)
    assert trn2.hbm_capacity == 96 * 2**30
    assert trn3.hbm_capacity == 144 * 2**30
    assert trn3.hbm_bandwidth == pytest.approx(4.9e12)
    assert [a.si for a in trn3.fields["hbm_bandwidth"].alt] == [pytest.approx(4.7e12)]
    assert catalog.chip("h100-sxm").peak("bf16") == pytest.approx(989.4e12, rel=1e-3)
    assert catalog.chip("h100-sxm").peak("fp8") == pytest.approx(1978.9e12, rel=1e-3)
    assert catalog.chip("a100-sxm-80gb").peak("fp8") == catalog.chip("a100-sxm-80gb").peak("bf16")
    assert catalog.system("trn3-ultraserver").n_chips == 144
    assert catalog.system("trn3-ultraserver-64").n_chips == 64
    assert catalog.system("trn2-ultraserver").n_chips == 64
    assert catalog.system("gb200-nvl72").n_chips == 72
    assert catalog.chip("trn3").fields["tdp"].status == "projected"
    assert catalog.chip("h100-sxm").tdp == 700


def test_unknown_ids_name_the_id_and_the_alternatives():
    with pytest.raises(CatalogError, match=r"chip id = 'trn9': unknown; known: .*trn3"):
        catalog.chip("trn9")
    with pytest.raises(CatalogError, match="system id = 'dgx-z1'"):
        catalog.system("dgx-z1")


def test_dataset_has_chip_dim_and_units():
    ds = catalog.to_dataset()
    assert ds.sizes["chip"] == len(CAT.chips)
    assert list(ds["precision"].values) == list(PRECISIONS)
    for name, var in ds.data_vars.items():
        assert "units" in var.attrs and "long_name" in var.attrs, name
    assert float(ds["peak_flops"].sel(chip="trn3", precision="mxfp8")) == pytest.approx(2517e12)
    assert math.isnan(float(ds["peak_flops"].sel(chip="trn2", precision="mxfp8")))
    assert str(ds["tdp_status"].sel(chip="trn3").values) == "projected"
    sys_ds = catalog.systems_to_dataset()
    assert float(sys_ds["hbm_capacity"].sel(system="trn3-ultraserver")) == 144 * 144 * 2**30


# --------------------------------------------------------------------- bad data is refused
GOOD = '''
[chip.test-x]
name = "Test chip"
vendor = "aws"
year = 2025
peak_bf16 = { value = 500, unit = "TFLOP/s", status = "announced", source = "NEU-TRN3" }
hbm_capacity = { value = 96, unit = "GiB", status = "announced", source = "NEU-TRN3" }
hbm_bandwidth = { value = 3, unit = "TB/s", status = "announced", source = "NEU-TRN3" }
scaleup_bandwidth = { value = 1000, unit = "GB/s", status = "announced", source = "NEU-TRN3" }
tdp = { value = 500, range = [400, 600], unit = "W", status = "projected", source = "NEU-TRN3", note = "guess" }
'''

BAD = {
    "missing unit": ('hbm_bandwidth = { value = 3, unit = "TB/s", ',
                     'hbm_bandwidth = { value = 3, ', r"\[chip.test-x\]: hbm_bandwidth: missing 'unit'"),
    "missing source": (', source = "NEU-TRN3" }\nscaleup', ' }\nscaleup',
                       r"\[chip.test-x\]: hbm_bandwidth: missing 'source'"),
    "unknown source": ('source = "NEU-TRN3" }\nhbm_capacity', 'source = "MY-BLOG" }\nhbm_capacity',
                       r"peak_bf16.source = 'MY-BLOG': unknown source key"),
    "missing status": ('unit = "GiB", status = "announced", ', 'unit = "GiB", ',
                       r"hbm_capacity: missing 'status'"),
    "bad status": ('"GiB", status = "announced"', '"GiB", status = "rumoured"',
                   r"hbm_capacity.status = 'rumoured': allowed: announced"),
    "unknown unit": ('unit = "TB/s"', 'unit = "TB/sec"',
                     r"\[chip.test-x\]: hbm_bandwidth.unit = 'TB/sec': unknown unit; allowed: "),
    "grammar unit not in the table": ('unit = "TB/s"', 'unit = "PB/s"',
                                      r"\[chip.test-x\]: hbm_bandwidth.unit = 'PB/s': unknown unit"),
    "wrong dimension": ('unit = "TB/s"', 'unit = "TB"', r"hbm_bandwidth.unit = 'TB': must be one of"),
    "impossible value": ('value = 500, range', 'value = -5, range',
                         r"tdp.range = \[400, 600\]: must satisfy low <= value \(-5\)"),
    "impossible magnitude": ('value = 3, unit = "TB/s"', 'value = 3000, unit = "TB/s"',
                             r"hbm_bandwidth = 3000.0: impossible for hbm_bandwidth"),
    "projected without range": ('range = [400, 600], ', '',
                                r"tdp.status = 'projected': a projected value needs range"),
    "unknown field": ('year = 2025', 'year = 2025\nhbm_speed = 3', r"hbm_speed = 3: unknown field"),
    "missing required": ('scaleup_bandwidth = {', 'scaleup_bw = {', r"scaleup_bw = .*unknown field"),
    "unknown vendor": ('vendor = "aws"', 'vendor = "acme"', r"vendor = 'acme': allowed: aws"),
    "slower fp8": ('year = 2025', 'year = 2025\npeak_fp8 = { value = 100, unit = "TFLOP/s", '
                   'status = "announced", source = "NEU-TRN3" }', r"peak_fp8 = 100.0: impossible"),
}


def _write_chip(hardware: Path, text: str) -> None:
    path = hardware / "chips.toml"
    path.write_text(path.read_text() + text)


def test_good_template_loads(hardware_copy):
    _write_chip(hardware_copy, GOOD)
    assert catalog.load(hardware_copy).chip("test-x").hbm_capacity == 96 * 2**30


@pytest.mark.parametrize("case", BAD.values(), ids=list(BAD))
def test_bad_chip_is_refused_with_file_entry_field(hardware_copy, case):
    old, new, pattern = case
    assert old in GOOD
    _write_chip(hardware_copy, GOOD.replace(old, new))
    with pytest.raises(CatalogError) as err:
        catalog.load(hardware_copy)
    msg = str(err.value)
    assert "\n" not in msg
    assert "chips.toml" in msg and re.search(pattern, msg), msg


def test_malformed_toml(hardware_copy):
    _write_chip(hardware_copy, "\n[chip.broken\nname = 1\n")
    with pytest.raises(CatalogError, match=r"chips.toml: malformed TOML"):
        catalog.load(hardware_copy)


def test_system_aggregate_is_cross_checked(hardware_copy):
    path = hardware_copy / "systems.toml"
    text = path.read_text()
    # the press figure 20.7 TB is 144 x 144 GB, not the catalog's 144 x 144 GiB (22.3 TB)
    block = text.split("[system.trn3-ultraserver]", 1)[1].split("\n[", 1)[0]
    line = next(ln for ln in block.splitlines() if ln.startswith("hbm_capacity"))
    path.write_text(text.replace(line, 'hbm_capacity = { value = 20.7, unit = "TB", '
                                       'status = "announced", source = "AIWIRE-TRN3" }'))
    with pytest.raises(CatalogError, match=r"\[system.trn3-ultraserver\]: hbm_capacity = 20.7: "
                                           r"inconsistent: 144 x trn3"):
        catalog.load(hardware_copy)


def test_system_with_unknown_chip(hardware_copy):
    path = hardware_copy / "systems.toml"
    text = path.read_text()
    block = text.split("[system.dgx-h100]", 1)[1].split("\n[", 1)[0]
    path.write_text(text.replace(block, block.replace('chip = "h100-sxm"', 'chip = "h100-pcie"')))
    with pytest.raises(CatalogError, match=r"\[system.dgx-h100\]: chip = 'h100-pcie': unknown"):
        catalog.load(hardware_copy)


# ----------------------------------------------------------------------------------- CLI
def test_cli_catalog_json_and_errors(capsys):
    assert main(["catalog", "trn3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fields"]["peak_mxfp8"]["value"] == 2517
    assert data["fields"]["tdp"]["status"] == "projected"
    assert main(["catalog"]) == 0
    assert "trn3-ultraserver" in capsys.readouterr().out
    assert main(["catalog", "trn9"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "'trn9'" in captured.err
    assert "Traceback" not in captured.err
