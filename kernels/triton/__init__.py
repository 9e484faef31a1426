"""Triton implementations of the decode-step ops (Linux only; on a CPU they run under TRITON_INTERPRET=1).

Kept apart from the op files so that `kernels.<op>` imports on machines without Triton; each module
here is imported only when the `triton` backend is asked for.
"""
