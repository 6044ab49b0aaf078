"""Tests of the hypervisor model (trace buffers, control operations, PV trace points)."""
