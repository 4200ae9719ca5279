"""x86 dot-product instructions for the register tiles, as Numba intrinsics.

Each intrinsic does one reduction step of a tile whose int32 accumulators
live in a stack buffer (``_tiles._tile_buffer``): it loads them, applies the
instruction, and stores them back; after inlining LLVM keeps them in
registers across the reduction loop. The buffer is not 64-byte aligned, so
every access declares the alignment it has (4 bytes); an over-stated
alignment there crashed.

Only compiled into kernels for weights whose format chose the instruction
(``_cpu``): on a CPU without it LLVM could not select it.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..._config import PREFERRED_VECTOR_BITS

#: int32 lanes of one vector: 16 with AVX-512, 8 with AVX-VNNI (256-bit).
LANES = (PREFERRED_VECTOR_BITS or 256) // 32
_VPDPBUSD = f"llvm.x86.avx512.vpdpbusd.{LANES * 32}"
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_VEC = ir.VectorType(_I32, LANES)


def _item_pointer(context, builder, array_type, array, indices):
    ary = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, ary, indices,
                                    wraparound=False)


def _emit_dpbusd(builder, tile, quads, slots, weights):
    """``tile[slot]`` (4 vectors each) += dot(broadcast quad, weight vectors):
    ``quads`` are i8 pointers to 4 activation bytes per row, ``weights`` an i8
    pointer to 4 vectors of 4 int8 weights per column."""
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_VEC, [_VEC, _VEC, _VEC]), _VPDPBUSD)
    vectors = [builder.load(builder.bitcast(builder.gep(weights, [ir.Constant(_I64, 4 * LANES * c)]),
                                            _VEC.as_pointer()), align=1)
               for c in range(4)]
    undef = ir.Constant(_VEC, ir.Undefined)
    for quad, slot in zip(quads, slots):
        value = builder.load(builder.bitcast(quad, _I32.as_pointer()), align=1)
        splat = builder.shuffle_vector(builder.insert_element(undef, value, ir.Constant(_I32, 0)),
                                       undef, ir.Constant(_VEC, [0] * LANES))
        for c in range(4):
            where = builder.gep(tile, [ir.Constant(_I64, (4 * slot + c) * LANES)])
            where = builder.bitcast(where, _VEC.as_pointer())
            total = builder.call(function, [builder.load(where, align=4), splat, vectors[c]])
            builder.store(total, where, align=4)


@intrinsic
def dpbusd_4_rows(typingctx, tile, q, r0, r1, r2, r3, k, panel, g):
    """Tile rows 0..3 += uint8 ``q[r_i, k:k + 4]`` . int8 ``panel[g]``: row
    ``g`` of a panel holds 4 weights for each of its ``4 * LANES`` columns
    (see ``int8.py``)."""
    def codegen(context, builder, signature, args):
        tile_v, q_v, *rows, k_v, panel_v, g_v = args
        quads = [_item_pointer(context, builder, signature.args[1], q_v, [r, k_v]) for r in rows]
        zero = context.get_constant(types.intp, 0)
        weights = _item_pointer(context, builder, signature.args[7], panel_v, [g_v, zero])
        _emit_dpbusd(builder, tile_v, quads, range(4), weights)
        return context.get_dummy_value()

    return types.none(tile, q, r0, r1, r2, r3, k, panel, g), codegen


@intrinsic
def dpbusd_6_rows(typingctx, tile, q, r, k, panel, g):
    """Tile rows 0..5 += ``q[r + i, k:k + 4]`` . ``panel[g]``."""
    def codegen(context, builder, signature, args):
        tile_v, q_v, r_v, k_v, panel_v, g_v = args
        quads = [_item_pointer(context, builder, signature.args[1], q_v,
                               [builder.add(r_v, context.get_constant(types.intp, i)), k_v])
                 for i in range(6)]
        zero = context.get_constant(types.intp, 0)
        weights = _item_pointer(context, builder, signature.args[4], panel_v, [g_v, zero])
        _emit_dpbusd(builder, tile_v, quads, range(6), weights)
        return context.get_dummy_value()

    return types.none(tile, q, r, k, panel, g), codegen


@intrinsic
def dpbusd_1_row(typingctx, tile, q, r, k, panel, g):
    """Two reduction steps of one row: tile row 0 += ``q[r, k:k + 4]`` .
    ``panel[g]``, tile row 1 += ``q[r, k + 4:k + 8]`` . ``panel[g + 1]``
    (two accumulator sets, so consecutive dot products do not wait on each
    other; the caller adds the rows)."""
    def codegen(context, builder, signature, args):
        tile_v, q_v, r_v, k_v, panel_v, g_v = args
        one = context.get_constant(types.intp, 1)
        four = context.get_constant(types.intp, 4)
        zero = context.get_constant(types.intp, 0)
        for slot, (kk, gg) in enumerate(((k_v, g_v), (builder.add(k_v, four), builder.add(g_v, one)))):
            quad = _item_pointer(context, builder, signature.args[1], q_v, [r_v, kk])
            weights = _item_pointer(context, builder, signature.args[4], panel_v, [gg, zero])
            _emit_dpbusd(builder, tile_v, [quad], [slot], weights)
        return context.get_dummy_value()

    return types.none(tile, q, r, k, panel, g), codegen
