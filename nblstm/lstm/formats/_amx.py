"""AMX tiles (Sapphire Rapids and later): int8 products with many rows, and
every bfloat16 product.

An AMX tile register holds up to 16 rows of 64 bytes. ``tdpbusd`` adds to an
int32 tile (16 x 16) the products of a uint8 tile (16 rows x 64
activations) and an int8 tile (16 rows of 4-weight groups x 16 columns):
16 x 16 x 64 multiply-adds in one instruction; ``tdpbf16ps`` adds to a
float32 tile the products of a bf16 tile (16 rows x 32) and a tile of 16
rows of bf16 pairs x 16 columns. The int8 and bfloat16 panels' layouts (one
row per group of 4 weights, or per pair, for every column) are exactly the
layout the weight tile wants, so the tiles load straight from the panels, 16
groups at a time; in bytes the two formats' blocks are the same.

A block is 32 rows x 32 columns: two activation tiles (tmm4, tmm5), two
weight tiles (tmm6, tmm7) and four accumulators (tmm0-3), so each loaded
tile feeds two products. ``configure`` sets every tile to 16 rows x 64
bytes; ``configure_shape`` to fewer rows or columns for tail blocks. A
kernel configures before its first block and releases after its last (the
configuration is per thread).

Linux gives a process the AMX state only on request
(``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``); without it the
first tile instruction kills the process, so ``_cpu`` asks once at import and
uses these tiles only if the kernel said yes.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..._config import JIT_OPTIONS

_I8 = ir.IntType(8)
_I16 = ir.IntType(16)
_I64 = ir.IntType(64)
_PTR = _I8.as_pointer()
_VOID = ir.VoidType()

#: Rows and columns of one block (see module doc).
BLOCK_ROWS = 32
BLOCK_COLUMNS = 32
#: Panel rows of K one weight tile covers (int8: groups of 4 weights,
#: bfloat16: pairs; 64 bytes of activations a row either way).
GROUPS_PER_TILE = 16


def _function(builder, name, arguments, result=_VOID):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(result, arguments),
                                          name)


@intrinsic
def configure_shape(typingctx, rows_0, rows_1, columns_0, columns_1):
    """Load a tile configuration (palette 1) for blocks of ``rows_a`` rows in
    row tile ``a`` and ``columns_b`` columns (4 bytes each) in weight tile
    ``b`` (each 0-16; 0: the tiles are left unconfigured and must not be
    used): accumulator tmm(2a + b) ``rows_a`` x ``columns_b``, row tile
    tmm(4 + a) ``rows_a`` x 64 bytes, weight tile tmm(6 + b) 16 x
    ``columns_b``. Every row of a result is computed alike whatever the
    shape, so a tail block gives the bits a whole one would."""
    if not all(isinstance(t, types.Integer) for t in (rows_0, rows_1, columns_0, columns_1)):
        return None

    def codegen(context, builder, signature, args):
        config = cgutils.alloca_once(builder, _I8, size=ir.Constant(_I64, 64))
        cgutils.memset(builder, config, ir.Constant(_I64, 64), 0)
        builder.store(ir.Constant(_I8, 1), config)  # palette 1
        rows = [builder.trunc(v, _I8) for v in args[:2]]
        columns = [builder.trunc(v, _I16) for v in args[2:]]
        zero8, zero16 = ir.Constant(_I8, 0), ir.Constant(_I16, 0)

        def put(tile, n_rows, n_bytes):
            colsb = builder.bitcast(builder.gep(config, [ir.Constant(_I64, 16 + 2 * tile)]),
                                    _I16.as_pointer())
            used = builder.and_(builder.icmp_unsigned("!=", n_rows, zero8),
                                builder.icmp_unsigned("!=", n_bytes, zero16))
            builder.store(builder.select(used, n_bytes, zero16), colsb, align=1)
            builder.store(builder.select(used, n_rows, zero8),
                          builder.gep(config, [ir.Constant(_I64, 48 + tile)]))

        four = ir.Constant(_I16, 4)
        for a in range(2):
            for b in range(2):
                put(2 * a + b, rows[a], builder.mul(columns[b], four))
            put(4 + a, rows[a], ir.Constant(_I16, 64))
        for b in range(2):
            put(6 + b, ir.Constant(_I8, 16), builder.mul(columns[b], four))
        builder.call(_function(builder, "llvm.x86.ldtilecfg", [_PTR]), [config])
        return context.get_dummy_value()

    return types.none(rows_0, rows_1, columns_0, columns_1), codegen


@njit(inline="always", **JIT_OPTIONS)
def configure():
    """:func:`configure_shape` of whole blocks: every tile 16 x 64 bytes."""
    configure_shape(16, 16, 16, 16)


@intrinsic
def release(typingctx):
    """``tilerelease``: back to the initial tile state."""
    def codegen(context, builder, signature, args):
        builder.call(_function(builder, "llvm.x86.tilerelease", []), [])
        return context.get_dummy_value()

    return types.none(), codegen


def _row_pointer(context, builder, array_type, array, row, byte_offset):
    """An i8 pointer to byte ``byte_offset`` of row ``row`` of a 2-D array."""
    ary = context.make_array(array_type)(context, builder, array)
    stride = builder.extract_value(ary.strides, 0)
    start = builder.add(builder.mul(row, stride), byte_offset)
    return builder.gep(builder.bitcast(ary.data, _PTR), [start])


def _block_codegen(n_row_tiles, accumulate, n_weight_tiles=2):
    """Codegen of a block of ``n_row_tiles`` row tiles (tmm4, tmm5) x
    ``n_weight_tiles`` weight tiles (tmm6, tmm7) of 16 columns, the
    accumulators in tmm0-3 (row tile a, weight tile b: tmm 2a + b). The
    accumulators start from zero and are stored at ``sums[0, 0]``, or with
    ``accumulate`` start from ``sums[s_r0:, s_c0:]`` and are stored back there."""
    def codegen(context, builder, signature, args):
        q_v, r_v, panel_v, c0_v, sums_v = args[:5]
        q_type, panel_type, sums_type = signature.args[0], signature.args[2], signature.args[4]
        intp = lambda value: context.get_constant(types.intp, value)  # noqa: E731
        s_r0, s_c0 = (args[5], args[6]) if accumulate else (intp(0), intp(0))
        name = "llvm.x86.tdpbusd" if sums_type.dtype == types.int32 else "llvm.x86.tdpbf16ps"
        zero_tile = _function(builder, "llvm.x86.tilezero", [_I8])
        load = _function(builder, "llvm.x86.tileloadd64", [_I8, _PTR, _I64])
        load_b = _function(builder, "llvm.x86.tileloaddt164", [_I8, _PTR, _I64])
        dot = _function(builder, name, [_I8, _I8, _I8])
        store = _function(builder, "llvm.x86.tilestored64", [_I8, _PTR, _I64])
        sums_stride = builder.extract_value(
            context.make_array(sums_type)(context, builder, sums_v).strides, 0)

        def sums_pointer(a, b):
            row = builder.add(s_r0, intp(16 * a))
            column_bytes = builder.mul(builder.add(s_c0, intp(16 * b)), intp(4))
            return _row_pointer(context, builder, sums_type, sums_v, row, column_bytes)

        for a in range(n_row_tiles):
            for b in range(n_weight_tiles):
                if accumulate:
                    builder.call(load, [ir.Constant(_I8, 2 * a + b), sums_pointer(a, b), sums_stride])
                else:
                    builder.call(zero_tile, [ir.Constant(_I8, 2 * a + b)])
        q_stride = builder.extract_value(context.make_array(q_type)(context, builder, q_v).strides, 0)
        panel_array = context.make_array(panel_type)(context, builder, panel_v)
        panel_stride = builder.extract_value(panel_array.strides, 0)
        n_groups = builder.extract_value(panel_array.shape, 0)
        with cgutils.for_range_slice(builder, intp(0), n_groups, intp(GROUPS_PER_TILE)) as (g, _):
            # Each tile is loaded just before its first product, so the first
            # product starts while the other tiles still load (K=80: 1.8x).
            # Weight tiles are used once per block: loaded with the T1 hint
            # (tileloaddt1: not kept in L1), 1.04-1.17x for 1-8 rows, level
            # for 16-32 (bfloat16, K=128-512, interleaved runs).
            for a in range(n_row_tiles):
                row = builder.add(r_v, intp(16 * a))
                where = _row_pointer(context, builder, q_type, q_v, row, builder.mul(g, intp(4)))
                builder.call(load, [ir.Constant(_I8, 4 + a), where, q_stride])
                for b in range(n_weight_tiles):
                    if a == 0:
                        column = builder.mul(builder.add(c0_v, intp(16 * b)), intp(4))
                        where = _row_pointer(context, builder, panel_type, panel_v, g, column)
                        builder.call(load_b, [ir.Constant(_I8, 6 + b), where, panel_stride])
                    builder.call(dot, [ir.Constant(_I8, 2 * a + b), ir.Constant(_I8, 4 + a),
                                       ir.Constant(_I8, 6 + b)])
        for a in range(n_row_tiles):
            for b in range(n_weight_tiles):
                builder.call(store, [ir.Constant(_I8, 2 * a + b), sums_pointer(a, b), sums_stride])
        return context.get_dummy_value()

    return codegen


def _block_signature(q, r0, panel, c0, sums, *position):
    int8 = (q.dtype == types.uint8 and panel.dtype == types.int8 and sums.dtype == types.int32)
    bf16 = (q.dtype == types.uint16 and panel.dtype in (types.uint16, types.uint32)
            and sums.dtype == types.float32)
    if not (int8 or bf16) or q.ndim != 2 or panel.ndim != 2 or sums.ndim != 2:
        return None
    return types.none(q, r0, panel, c0, sums, *position)


@intrinsic
def block_product(typingctx, q, r0, panel, c0, sums):
    """``sums[:32, :32] = q[r0:r0 + 32] @ panel columns [c0, c0 + 32)``, a
    block of 32 rows (see module doc).

    int8: ``q`` uint8 (rows, >= 4 G), ``panel`` int8 (G, 4 * width), ``sums``
    int32, exact (``tdpbusd``). bfloat16: ``q`` uint16 (rows, >= 2 G),
    ``panel`` (G, 2 * width) uint16 pairs or (G, width) uint32, ``sums``
    float32 (``tdpbf16ps``). G is a multiple of GROUPS_PER_TILE; ``sums`` is
    (>= 32, >= 32). The rows ``r0 .. r0 + 31`` must exist in ``q`` (they may
    be garbage: their sums are garbage, nothing else)."""
    signature = _block_signature(q, r0, panel, c0, sums)
    return (signature, _block_codegen(2, False, 2)) if signature is not None else None


@intrinsic
def accumulate_2x2(typingctx, q, r0, panel, c0, sums, s_r0, s_c0):
    """:func:`block_product` added to what ``sums[s_r0:, s_c0:]`` holds
    (``tdpbf16ps`` accumulates on it: no separate addition): 2 row tiles x 2
    weight tiles, each of the rows and columns :func:`configure_shape` gave."""
    signature = _block_signature(q, r0, panel, c0, sums, s_r0, s_c0)
    return (signature, _block_codegen(2, True, 2)) if signature is not None else None


@intrinsic
def accumulate_2x1(typingctx, q, r0, panel, c0, sums, s_r0, s_c0):
    """:func:`accumulate_2x2` with one weight tile (tail columns)."""
    signature = _block_signature(q, r0, panel, c0, sums, s_r0, s_c0)
    return (signature, _block_codegen(2, True, 1)) if signature is not None else None


@intrinsic
def accumulate_1x2(typingctx, q, r0, panel, c0, sums, s_r0, s_c0):
    """:func:`accumulate_2x2` with one row tile (tail rows)."""
    signature = _block_signature(q, r0, panel, c0, sums, s_r0, s_c0)
    return (signature, _block_codegen(1, True, 2)) if signature is not None else None


@intrinsic
def accumulate_1x1(typingctx, q, r0, panel, c0, sums, s_r0, s_c0):
    """:func:`accumulate_2x2` with one row tile and one weight tile."""
    signature = _block_signature(q, r0, panel, c0, sums, s_r0, s_c0)
    return (signature, _block_codegen(1, True, 1)) if signature is not None else None


@intrinsic
def sums_buffer(typingctx, like):
    """A stack buffer for one block's sums (BLOCK_ROWS x BLOCK_COLUMNS) of
    the dtype of array ``like`` (int32 or float32), so that no call
    allocates one."""
    element = like.dtype

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(element),
                                   size=ir.Constant(_I64, BLOCK_ROWS * BLOCK_COLUMNS))

    return types.CPointer(element)(like), codegen
