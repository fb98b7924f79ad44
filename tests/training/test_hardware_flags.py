"""The CPU's flags that speed depends on, as run summaries and benchmarks record them."""

from cifarlab.training.hardware import CPU_FLAGS, cpu_flags

CPUINFO = """processor\t: 0
model name\t: Some Xeon
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16 avx512vl
"""


def test_flags_are_read_from_cpuinfo_in_a_fixed_order():
    assert cpu_flags(CPUINFO) == ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]


def test_a_cpu_without_them_and_text_without_flags():
    assert cpu_flags("flags\t: fpu sse2 avx\n") == []
    assert cpu_flags("model name\t: Apple M2\n") == []


def test_this_machine_reports_a_subset():
    assert set(cpu_flags()) <= set(CPU_FLAGS)
