"""The matmul peak: measured afresh on request, kept once per process for the training callback."""

import torch

from marquee.training.throughput import matmul_peak, measured_matmul_peak


def test_the_peak_is_measured_once_per_process_unless_asked_for_afresh():
    cpu = torch.device("cpu")
    measured_matmul_peak.cache_clear()
    first = measured_matmul_peak(cpu, size=64, repeats=2)
    assert measured_matmul_peak(cpu, size=64, repeats=2) == first  # the kept figure, not a new timing
    assert measured_matmul_peak.cache_info().misses == 1
    fresh = matmul_peak(cpu, size=64, repeats=2)  # a new timing, which leaves the kept figure alone
    assert fresh > 0 and measured_matmul_peak.cache_info().misses == 1
    measured_matmul_peak.cache_clear()
