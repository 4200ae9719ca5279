"""LLVM-level helpers that kernels call like functions (Numba intrinsics)."""

from __future__ import annotations

import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._config import PREFERRED_VECTOR_BITS

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


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


def _without_owner(context, builder, value_type, value):
    """``value`` with the meminfo and parent of every array in it null."""
    if isinstance(value_type, types.Array):
        array = context.make_array(value_type)(context, builder, value)
        array.meminfo = cgutils.get_null_value(array.meminfo.type)
        array.parent = cgutils.get_null_value(array.parent.type)
        return array._getvalue()
    if isinstance(value_type, types.BaseTuple):
        for i, item_type in enumerate(value_type):
            item = _without_owner(context, builder, item_type, builder.extract_value(value, i))
            value = builder.insert_value(value, item, i)
    return value


@intrinsic
def borrowed(typingctx, value):
    """``value`` (an array, a tuple or named tuple of arrays and scalars, or
    a scalar or None) whose arrays do not own their memory: views with a
    null meminfo, valid only while the caller's arrays are.

    Numba increfs each array a kernel receives and every view it makes, and
    decrefs them when done: an atomic update each, which its pruning pass
    leaves wherever a call or a branch comes between (40 pairs a one-row
    int8 step, 55% of its time at H=64). On a null meminfo both are a test
    and a return. Call it once, outside a loop over steps, on the arrays the
    loop passes down.

    Only on arrays the kernel's caller holds (its arguments, and views of
    them), never on one the kernel allocates: Numba frees that after the
    variable's last use, and a borrowed view does not count as one.
    """
    if not isinstance(value, (types.Array, types.BaseTuple, types.NoneType, types.Number,
                              types.Boolean)):
        return None

    def codegen(context, builder, signature, args):
        return _without_owner(context, builder, signature.args[0], args[0])

    return value(value), codegen


def _item_pointer(context, builder, array_type, array, index):
    ary = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, ary, [index],
                                    wraparound=False)


@intrinsic
def atomic_add(typingctx, array, index, value):
    """``old = array[index]; array[index] += value; return old`` as one atomic
    read-modify-write (acquire-release) on a 1-D int64 array."""
    if not (isinstance(array, types.Array) and array.ndim == 1
            and array.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        ptr = _item_pointer(context, builder, signature.args[0], args[0], args[1])
        delta = context.cast(builder, args[2], signature.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, delta, "acq_rel")

    return types.int64(array, index, value), codegen


@intrinsic
def atomic_load(typingctx, array, index):
    """``array[index]`` read atomically with acquire ordering (1-D int64):
    whatever the writer stored before its releasing :func:`atomic_add` is
    visible after this load sees the added value."""
    if not (isinstance(array, types.Array) and array.ndim == 1
            and array.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        ptr = _item_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(array, index), codegen


@intrinsic
def spin_pause(typingctx):
    """The x86 ``pause`` hint for a spin-wait loop (a no-op elsewhere)."""

    def codegen(context, builder, signature, args):
        if _X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def fused_multiply_add(typingctx, a, b, c):
    """``a * b + c`` with one rounding (``llvm.fma``), for three float32 or
    three float64 scalars: the result does not depend on whether LLVM
    contracts, so a NumPy twin can reproduce it exactly."""
    if not (a == b == c and isinstance(a, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        ll_type = context.get_value_type(signature.args[0])
        fn = cgutils.get_or_insert_function(builder.module,
                                            ir.FunctionType(ll_type, [ll_type] * 3),
                                            f"llvm.fma.{'f32' if ll_type == ir.FloatType() else 'f64'}")
        return builder.call(fn, list(args))

    return a(a, b, c), codegen


def _float_pair_intrinsic(llvm_name, doc):
    @intrinsic
    def pair(typingctx, a, b):
        if not (a == b and isinstance(a, types.Float)):
            return None

        def codegen(context, builder, signature, args):
            ll_type = context.get_value_type(signature.args[0])
            suffix = "f32" if ll_type == ir.FloatType() else "f64"
            fn = cgutils.get_or_insert_function(builder.module,
                                                ir.FunctionType(ll_type, [ll_type] * 2),
                                                f"{llvm_name}.{suffix}")
            return builder.call(fn, list(args))

        return a(a, b), codegen

    pair.__doc__ = doc
    return pair


minimum = _float_pair_intrinsic(
    "llvm.minimum", "``min(a, b)`` that propagates NaN (``llvm.minimum``): LLVM vectorises a "
    "reduction of it without assuming there are no NaNs.")
maximum = _float_pair_intrinsic(
    "llvm.maximum", "``max(a, b)`` that propagates NaN (``llvm.maximum``), see :func:`minimum`.")


@intrinsic
def prefetch(typingctx, array, row, col):
    """Ask the CPU to bring the cache line holding ``array[row, col]`` (a 2-D
    array) into its caches for reading and writing (``llvm.prefetch``): a
    hint that never faults and changes no result, for data a tile will read
    only after its reduction (the gates of a recurrent step, which its
    epilogue adds to, come from memory).

    No bounds are checked: a line past the array is a harmless hint.
    """
    if not (isinstance(array, types.Array) and array.ndim == 2
            and isinstance(row, types.Integer) and isinstance(col, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        ary = context.make_array(array_type)(context, builder, args[0])
        indices = [context.cast(builder, value, value_type, types.intp)
                   for value, value_type in zip(args[1:], signature.args[1:])]
        ptr = cgutils.get_item_pointer(context, builder, array_type, ary, indices,
                                       wraparound=False)
        int8_ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [int8_ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # rw 1 (the epilogue writes the line too), locality 3 (keep it), data cache.
        builder.call(fn, [int8_ptr, ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(array, row, col), codegen
