"""Shape tests that hold under ``torch.export`` without importing the symbolic-shape
machinery at start-up (``torch.fx.experimental.symbolic_shapes`` pulls in sympy: half a
second of every command's start)."""


def is_zero_count(count):
    """``count == 0`` for a tensor's size that may be symbolic: a plain int answers
    directly; a traced (unbacked) size answers False when the trace cannot decide, so the
    graph keeps no branch on it (``guard_or_false``)."""
    if isinstance(count, int):
        return count == 0
    from torch.fx.experimental.symbolic_shapes import guard_or_false

    return guard_or_false(count == 0)
