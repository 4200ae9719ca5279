"""AMX tiles (Sapphire Rapids and later) for int8 products with many rows.

An AMX tile register holds 16 rows of 64 bytes; ``tdpbusd`` adds to an int32
tile (16 x 16) the products of a uint8 tile (16 rows x 64 activations) and an
int8 tile (16 rows of 4-weight groups x 16 columns): 16 x 16 x 64
multiply-adds in one instruction. The int8 panels' layout (one row per group
of 4 weights, 4 weights per column) is exactly the layout the weight tile
wants, so the tiles load straight from the panels, 16 groups at a time.

A block is 32 rows x 32 columns: two activation tiles (tmm4, tmm5), two
weight tiles (tmm6, tmm7) and four int32 accumulators (tmm0-3), so each
loaded tile feeds two ``tdpbusd``. Every tile register is configured as 16
rows x 64 bytes (``configure``); a kernel configures before its first block
and releases after its last (the configuration is per thread).

Linux gives a process the AMX state only on request
(``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``); without it the
first tile instruction kills the process, so ``_cpu`` asks once at import and
uses these tiles only if the kernel said yes.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_I8 = ir.IntType(8)
_I16 = ir.IntType(16)
_I64 = ir.IntType(64)
_PTR = _I8.as_pointer()
_VOID = ir.VoidType()

#: Rows and columns of one block (see module doc).
BLOCK_ROWS = 32
BLOCK_COLUMNS = 32
#: 4-weight groups of K one tile covers (64 bytes of activations a row).
GROUPS_PER_TILE = 16


def _function(builder, name, arguments, result=_VOID):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(result, arguments),
                                          name)


def _byte_pointer(context, builder, array_type, array, indices):
    ary = context.make_array(array_type)(context, builder, array)
    pointer = cgutils.get_item_pointer(context, builder, array_type, ary, indices,
                                       wraparound=False)
    return builder.bitcast(pointer, _PTR)


@intrinsic
def configure(typingctx):
    """Load a tile configuration (palette 1) with all eight tiles 16 x 64 bytes."""
    def codegen(context, builder, signature, args):
        config = cgutils.alloca_once(builder, _I8, size=ir.Constant(_I64, 64))
        cgutils.memset(builder, config, ir.Constant(_I64, 64), 0)
        builder.store(ir.Constant(_I8, 1), config)  # palette 1
        for tile in range(8):
            colsb = builder.bitcast(builder.gep(config, [ir.Constant(_I64, 16 + 2 * tile)]),
                                    _I16.as_pointer())
            builder.store(ir.Constant(_I16, 64), colsb, align=1)
            builder.store(ir.Constant(_I8, 16), builder.gep(config, [ir.Constant(_I64, 48 + tile)]))
        builder.call(_function(builder, "llvm.x86.ldtilecfg", [_PTR]), [config])
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def release(typingctx):
    """``tilerelease``: back to the initial tile state."""
    def codegen(context, builder, signature, args):
        builder.call(_function(builder, "llvm.x86.tilerelease", []), [])
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def block_product(typingctx, q, r0, panel, c0, sums):
    """``sums[:32, :32] = q[r0:r0 + 32, :4 G] @ panel columns [c0, c0 + 32)``
    in exact int32: ``q`` uint8 (rows, >= 4 G), ``panel`` int8 (G, 4 * width)
    with G a multiple of GROUPS_PER_TILE, ``sums`` int32 C-contiguous (32, 32).
    The rows ``r0 .. r0 + 31`` must exist in ``q`` (they may be garbage)."""
    def codegen(context, builder, signature, args):
        q_v, r_v, panel_v, c0_v, sums_v = args
        q_type, panel_type, sums_type = signature.args[0], signature.args[2], signature.args[4]
        intp = lambda value: context.get_constant(types.intp, value)  # noqa: E731
        zero_tile = _function(builder, "llvm.x86.tilezero", [_I8])
        load = _function(builder, "llvm.x86.tileloadd64", [_I8, _PTR, _I64])
        dot = _function(builder, "llvm.x86.tdpbusd", [_I8, _I8, _I8])
        store = _function(builder, "llvm.x86.tilestored64", [_I8, _PTR, _I64])
        for tile in range(4):
            builder.call(zero_tile, [ir.Constant(_I8, tile)])
        q_stride = builder.extract_value(context.make_array(q_type)(context, builder, q_v).strides, 0)
        panel_array = context.make_array(panel_type)(context, builder, panel_v)
        panel_stride = builder.extract_value(panel_array.strides, 0)
        n_groups = builder.extract_value(panel_array.shape, 0)
        with cgutils.for_range_slice(builder, intp(0), n_groups, intp(GROUPS_PER_TILE)) as (g, _):
            k = builder.mul(g, intp(4))
            for a in range(2):
                row = builder.add(r_v, intp(16 * a))
                builder.call(load, [ir.Constant(_I8, 4 + a),
                                    _byte_pointer(context, builder, q_type, q_v, [row, k]), q_stride])
            for b in range(2):
                column = builder.mul(builder.add(c0_v, intp(16 * b)), intp(4))
                builder.call(load, [ir.Constant(_I8, 6 + b),
                                    _byte_pointer(context, builder, panel_type, panel_v, [g, column]),
                                    panel_stride])
            for a in range(2):
                for b in range(2):
                    builder.call(dot, [ir.Constant(_I8, 2 * a + b), ir.Constant(_I8, 4 + a),
                                       ir.Constant(_I8, 6 + b)])
        sums_stride = builder.extract_value(
            context.make_array(sums_type)(context, builder, sums_v).strides, 0)
        for a in range(2):
            for b in range(2):
                where = _byte_pointer(context, builder, sums_type, sums_v, [intp(16 * a), intp(16 * b)])
                builder.call(store, [ir.Constant(_I8, 2 * a + b), where, sums_stride])
        return context.get_dummy_value()

    return types.none(q, r0, panel, c0, sums), codegen


@intrinsic
def sums_buffer(typingctx):
    """A stack buffer for one block's int32 sums (BLOCK_ROWS x BLOCK_COLUMNS),
    so that no call allocates one."""
    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, ir.IntType(32),
                                   size=ir.Constant(_I64, BLOCK_ROWS * BLOCK_COLUMNS))

    return types.CPointer(types.int32)(), codegen
