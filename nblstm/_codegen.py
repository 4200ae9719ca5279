"""LLVM-level helpers that kernels call like functions (Numba intrinsics)."""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic

from ._config import PREFERRED_VECTOR_BITS


@intrinsic
def prefer_vector_width(typingctx):
    """Compile the calling kernel for :data:`_config.PREFERRED_VECTOR_BITS`-bit
    vectors.

    Sets LLVM's ``"prefer-vector-width"`` attribute on the function being
    compiled -- what clang's ``-mprefer-vector-width`` does -- instead of
    changing the target machine for every function in the process. Call it
    first thing in each kernel with hot loops; it emits no code.
    """

    def codegen(context, builder, signature, args):
        if PREFERRED_VECTOR_BITS:
            # llvmlite validates only flag attributes; a string (key-value)
            # attribute is written into the IR as given.
            set.add(builder.function.attributes,
                    f'"prefer-vector-width"="{PREFERRED_VECTOR_BITS}"')
        return context.get_dummy_value()

    return types.none(), codegen
