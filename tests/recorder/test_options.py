"""xentrace option syntax: event masks, CPU lists, sizes, numbers."""

from __future__ import annotations

import pytest

from pyxentrace.recorder.options import (
    OptionError,
    parse_cpu_mask,
    parse_evt_mask,
    parse_size,
    strtol,
)


def test_event_mask_keywords_or_and_numbers_replace() -> None:
    assert parse_evt_mask(["sched"]) == 0x0002F000
    assert parse_evt_mask(["sched", "pv"]) == 0x0022F000
    assert parse_evt_mask(["gen", "dom0op", "hvm", "mem"]) == 0x001DF000
    assert parse_evt_mask(["all"]) == 0x0FFFF000
    assert parse_evt_mask(["pv", "0x00201000"]) == 0x00201000  # a number replaces
    assert parse_evt_mask(["0x00201000", "sched"]) == 0x0022F000
    assert parse_evt_mask(["010"]) == 8  # strtol base 0: octal
    assert parse_evt_mask([]) == 0
    with pytest.raises(OptionError):
        parse_evt_mask(["bogus"])


@pytest.mark.parametrize(
    ("text", "bits"),
    [
        ("0", 0b1),
        ("3", 0b1000),  # a bare number is a CPU, not a mask
        ("0-2", 0b111),
        ("1,3", 0b1010),
        ("-2", 0b111),
        ("2-", 0b11111100),
        ("2-0", 0b11111100),  # xentrace: "N-0" also means N to the last CPU
        ("0-1,6-7", 0b11000011),
        ("all", 0xFF),
        ("0x5", 0b101),
        ("0x100000005", 0b101),  # hex: the low 32 bits only
    ],
)
def test_cpu_masks(text: str, bits: int) -> None:
    assert parse_cpu_mask(text, 8) == bits


@pytest.mark.parametrize("text", ["", "1,,2", "3-1", "8", "0-9", "a", "1-2-3", "-"])
def test_bad_cpu_masks(text: str) -> None:
    with pytest.raises(OptionError):
        parse_cpu_mask(text, 8)


def test_sizes_and_numbers() -> None:
    assert parse_size("4096") == 4096
    assert parse_size("64K") == parse_size("64k") == 65536
    assert parse_size("2M") == 2 << 20
    assert parse_size("1G") == 1 << 30
    with pytest.raises(OptionError):
        parse_size("12Q")
    assert strtol("0x1f", "x") == 31
    assert strtol("017", "x") == 15
    assert strtol("-5", "x") == -5
    with pytest.raises(OptionError):
        strtol("12abc", "x")
