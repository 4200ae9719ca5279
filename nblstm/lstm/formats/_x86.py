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


# ----------------------------------------------------------------- floats on AVX2: FMA steps

#: Bytes of an AVX2 vector.
_YMM_BYTES = 32


def _float_type(dtype):
    return ir.DoubleType() if dtype == types.float64 else ir.FloatType()


def _emit_fma_rows(context, builder, tile, values, weights, dtype, n_vectors):
    """``tile[slot]`` (``n_vectors`` vectors each) = fma(broadcast value,
    weight vector, itself) for each row ``values[slot]`` (a pointer to one
    float); ``weights`` points at ``n_vectors`` consecutive vectors. The
    weights load first and each row's broadcast just before its FMAs, so
    one register holds a broadcast at a time."""
    element = _float_type(dtype)
    lanes = _YMM_BYTES // context.get_abi_sizeof(element)
    vec = ir.VectorType(element, lanes)
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vec, [vec, vec, vec]),
        f"llvm.fma.v{lanes}f{context.get_abi_sizeof(element) * 8}")
    vectors = [builder.load(builder.bitcast(builder.gep(weights, [ir.Constant(_I64, lanes * v)]),
                                            vec.as_pointer()), align=context.get_abi_sizeof(element))
               for v in range(n_vectors)]
    undef = ir.Constant(vec, ir.Undefined)
    tile = builder.bitcast(tile, element.as_pointer())
    for slot, value in enumerate(values):
        splat = builder.shuffle_vector(builder.insert_element(undef, builder.load(value),
                                                              ir.Constant(_I32, 0)),
                                       undef, ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))
        for v in range(n_vectors):
            where = builder.gep(tile, [ir.Constant(_I64, (n_vectors * slot + v) * lanes)])
            where = builder.bitcast(where, vec.as_pointer())
            total = builder.call(fma, [splat, vectors[v], builder.load(where, align=4)])
            builder.store(total, where, align=4)


def _float_operands(a, panel) -> bool:
    return (isinstance(a, types.Array) and a.dtype in (types.float32, types.float64)
            and isinstance(panel, types.Array) and panel.dtype == a.dtype)


@intrinsic
def fma_4_rows(typingctx, tile, a, r0, r1, r2, r3, k, panel, c0):
    """Tile rows 0..3 (two AVX2 vectors each: 16 float32 or 8 float64
    columns) = fma(``a[r_i, k]``, ``panel[k, c0:]``, themselves)."""
    if not _float_operands(a, panel):
        return None

    def codegen(context, builder, signature, args):
        tile_v, a_v, *rows, k_v, panel_v, c0_v = args
        values = [_item_pointer(context, builder, signature.args[1], a_v, [r, k_v]) for r in rows]
        weights = _item_pointer(context, builder, signature.args[7], panel_v, [k_v, c0_v])
        _emit_fma_rows(context, builder, tile_v, values, weights, signature.args[1].dtype, 2)
        return context.get_dummy_value()

    return types.none(tile, a, r0, r1, r2, r3, k, panel, c0), codegen


@intrinsic
def fma_6_rows(typingctx, tile, a, r, k, panel, c0):
    """Tile rows 0..5 = fma(``a[r + i, k]``, ``panel[k, c0:]``, themselves),
    two vectors each (BLIS's 6 x 16 Haswell kernel for float32)."""
    if not _float_operands(a, panel):
        return None

    def codegen(context, builder, signature, args):
        tile_v, a_v, r_v, k_v, panel_v, c0_v = args
        values = [_item_pointer(context, builder, signature.args[1], a_v,
                                [builder.add(r_v, context.get_constant(types.intp, i)), k_v])
                  for i in range(6)]
        weights = _item_pointer(context, builder, signature.args[4], panel_v, [k_v, c0_v])
        _emit_fma_rows(context, builder, tile_v, values, weights, signature.args[1].dtype, 2)
        return context.get_dummy_value()

    return types.none(tile, a, r, k, panel, c0), codegen


# ----------------------------------------------------------------- bfloat16 on AVX2: widened FMA steps


@intrinsic
def bf16_fma_4_rows(typingctx, tile, pairs, r0, r1, r2, r3, g, panel, c0):
    """Tile rows 0..3 (two float32 vectors each: 16 columns) += bf16 pair
    ``pairs[r_i, g]`` . ``panel[g, c0:c0 + 16]`` (uint32 pairs, see
    ``bfloat16.py``) in vdpbf16ps's order: ``fma(low, w_low, fma(high,
    w_high, acc))``, every value widened by a shift or a mask. 8
    accumulators, 4 widened weight vectors and 2 broadcasts: within AVX2's
    16 registers."""
    def codegen(context, builder, signature, args):
        tile_v, pairs_v, *rows, g_v, panel_v, c0_v = args
        float_vec = ir.VectorType(ir.FloatType(), 8)
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(float_vec, [float_vec] * 3), "llvm.fma.v8f32")
        sixteen = ir.Constant(_VEC8, [16] * 8)
        high = ir.Constant(_VEC8, [0xFFFF0000 - (1 << 32)] * 8)

        def widen(bits):  # (low, high) halves of uint32 pairs as float32
            return (builder.bitcast(builder.shl(bits, sixteen), float_vec),
                    builder.bitcast(builder.and_(bits, high), float_vec))

        where = _item_pointer(context, builder, signature.args[7], panel_v, [g_v, c0_v])
        weights = [widen(builder.load(builder.bitcast(builder.gep(where, [ir.Constant(_I64, 8 * v)]),
                                                      _VEC8.as_pointer()), align=4))
                   for v in range(2)]
        undef = ir.Constant(_VEC8, ir.Undefined)
        tile = builder.bitcast(tile_v, ir.FloatType().as_pointer())
        for slot, r in enumerate(rows):
            pair = builder.load(_item_pointer(context, builder, signature.args[1], pairs_v, [r, g_v]))
            splat = builder.shuffle_vector(builder.insert_element(undef, pair, ir.Constant(_I32, 0)),
                                           undef, ir.Constant(_VEC8, [0] * 8))
            low, high_half = widen(splat)
            for v in range(2):
                at = builder.bitcast(builder.gep(tile, [ir.Constant(_I64, (2 * slot + v) * 8)]),
                                     float_vec.as_pointer())
                odd = builder.call(fma, [high_half, weights[v][1], builder.load(at, align=4)])
                builder.store(builder.call(fma, [low, weights[v][0], odd]), at, align=4)
        return context.get_dummy_value()

    return types.none(tile, pairs, r0, r1, r2, r3, g, panel, c0), codegen


# ----------------------------------------------------------------- int8 on AVX2: vpmaddwd

#: i16 lanes of one AVX2 vector; each ``vpmaddwd`` lane sums two products.
_PMADDWD = "llvm.x86.avx2.pmadd.wd"
_VEC8 = ir.VectorType(_I32, 8)
_WORDS = ir.VectorType(ir.IntType(16), 16)
_BYTES = ir.VectorType(ir.IntType(8), 16)
_QUADS = ir.VectorType(_I64, 4)


def _emit_pmaddwd(builder, tile, words, slots, weights, n_vectors):
    """``tile[slot]`` (``n_vectors`` int32 vectors each) += vpmaddwd(broadcast
    words, weight vectors): ``words`` are i8 pointers to 4 uint16 activations
    per row (any pointer type); ``weights`` an i8 pointer to ``n_vectors`` runs of 16 int8
    weights (4 columns x 4), each sign-extended to 16 bits. A result lane
    holds the sum of two of a column's four products: lanes ``2c`` and
    ``2c + 1`` of a vector are column ``c``'s halves, added in the epilogue."""
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_VEC8, [_WORDS, _WORDS]), _PMADDWD)
    vectors = [builder.sext(builder.load(builder.bitcast(
        builder.gep(weights, [ir.Constant(_I64, 16 * v)]), _BYTES.as_pointer()), align=1), _WORDS)
        for v in range(n_vectors)]
    undef = ir.Constant(_QUADS, ir.Undefined)
    for word, slot in zip(words, slots):
        value = builder.load(builder.bitcast(word, _I64.as_pointer()), align=2)
        splat = builder.shuffle_vector(builder.insert_element(undef, value, ir.Constant(_I32, 0)),
                                       undef, ir.Constant(ir.VectorType(_I32, 4), [0] * 4))
        splat = builder.bitcast(splat, _WORDS)
        for v in range(n_vectors):
            where = builder.gep(tile, [ir.Constant(_I64, (n_vectors * slot + v) * 8)])
            where = builder.bitcast(where, _VEC8.as_pointer())
            product = builder.call(function, [splat, vectors[v]])
            builder.store(builder.add(builder.load(where, align=4), product), where, align=4)


@intrinsic
def pmaddwd_4_rows(typingctx, tile, q, r0, r1, r2, r3, k, panel, g, c0):
    """Tile rows 0..3 (16 int32 each: 8 columns x 2 halves) += uint16
    ``q[r_i, k:k + 4]`` . int8 ``panel[g]`` columns ``[c0, c0 + 8)`` (the
    panel layout of ``int8.py``). 8 accumulators: AVX2 has 16 registers."""
    def codegen(context, builder, signature, args):
        tile_v, q_v, *rows, k_v, panel_v, g_v, c0_v = args
        words = [_item_pointer(context, builder, signature.args[1], q_v, [r, k_v]) for r in rows]
        column = builder.mul(c0_v, context.get_constant(types.intp, 4))
        weights = _item_pointer(context, builder, signature.args[7], panel_v, [g_v, column])
        _emit_pmaddwd(builder, tile_v, words, range(4), weights, 2)
        return context.get_dummy_value()

    return types.none(tile, q, r0, r1, r2, r3, k, panel, g, c0), codegen


@intrinsic
def pmaddwd_1_row(typingctx, tile, q, r, k, panel, g, c0):
    """Tile row 0 (64 int32: 32 columns x 2 halves) += ``q[r, k:k + 4]`` .
    ``panel[g]`` columns ``[c0, c0 + 32)``."""
    def codegen(context, builder, signature, args):
        tile_v, q_v, r_v, k_v, panel_v, g_v, c0_v = args
        word = _item_pointer(context, builder, signature.args[1], q_v, [r_v, k_v])
        column = builder.mul(c0_v, context.get_constant(types.intp, 4))
        weights = _item_pointer(context, builder, signature.args[4], panel_v, [g_v, column])
        _emit_pmaddwd(builder, tile_v, [word], [0], weights, 8)
        return context.get_dummy_value()

    return types.none(tile, q, r, k, panel, g, c0), codegen


# ----------------------------------------------------------------- bfloat16: vdpbf16ps

#: float32 lanes += the dot product of two bf16 pairs per lane (AVX512-BF16).
#: Declared with i32 pair operands, which LLVM upgrades to its <N x bfloat> form.
_DPBF16PS = f"llvm.x86.avx512bf16.dpbf16ps.{LANES * 32}"
_FLOAT_VEC = ir.VectorType(ir.FloatType(), LANES)


def _emit_dpbf16ps(builder, tile, pairs, slots, weights):
    """``tile[slot]`` (4 float32 vectors each) = vdpbf16ps(itself, broadcast
    pair, weight vectors): ``pairs`` are i32 pointers to one pair of bf16
    activations per row, ``weights`` an i32 pointer to 4 vectors of LANES
    bf16 pairs (one pair per column)."""
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_FLOAT_VEC, [_FLOAT_VEC, _VEC, _VEC]), _DPBF16PS)
    vectors = [builder.load(builder.bitcast(builder.gep(weights, [ir.Constant(_I64, LANES * c)]),
                                            _VEC.as_pointer()), align=4)
               for c in range(4)]
    undef = ir.Constant(_VEC, ir.Undefined)
    for pair, slot in zip(pairs, slots):
        value = builder.load(pair, align=4)
        splat = builder.shuffle_vector(builder.insert_element(undef, value, ir.Constant(_I32, 0)),
                                       undef, ir.Constant(_VEC, [0] * LANES))
        for c in range(4):
            where = builder.gep(tile, [ir.Constant(_I64, (4 * slot + c) * LANES)])
            where = builder.bitcast(where, _FLOAT_VEC.as_pointer())
            total = builder.call(function, [builder.load(where, align=4), splat, vectors[c]])
            builder.store(total, where, align=4)


@intrinsic
def dpbf16ps_4_rows(typingctx, tile, pairs, r0, r1, r2, r3, panel, g):
    """Tile rows 0..3 (float32) += bf16 pair ``pairs[r_i, g]`` . ``panel[g]``:
    ``pairs`` (rows, K / 2) and ``panel`` (G, 4 * LANES) are uint32 views of
    bf16 pairs (see ``bfloat16.py``)."""
    def codegen(context, builder, signature, args):
        tile_v, pairs_v, *rows, panel_v, g_v = args
        where = [_item_pointer(context, builder, signature.args[1], pairs_v, [r, g_v])
                 for r in rows]
        zero = context.get_constant(types.intp, 0)
        weights = _item_pointer(context, builder, signature.args[6], panel_v, [g_v, zero])
        _emit_dpbf16ps(builder, tile_v, where, range(4), weights)
        return context.get_dummy_value()

    return types.none(tile, pairs, r0, r1, r2, r3, panel, g), codegen


@intrinsic
def dpbf16ps_1_row_2_panels(typingctx, tile, pairs, r, panel0, panel1, g):
    """Tile rows 0 and 1 += ``pairs[r, g]`` . ``panel0[g]`` and . ``panel1[g]``:
    one row through two panels, each column's sums in the order of
    :func:`dpbf16ps_1_row`, with 8 independent accumulator vectors instead
    of 4 (one panel's 4 chains wait on vdpbf16ps's latency)."""
    def codegen(context, builder, signature, args):
        tile_v, pairs_v, r_v, panel0_v, panel1_v, g_v = args
        where = _item_pointer(context, builder, signature.args[1], pairs_v, [r_v, g_v])
        zero = context.get_constant(types.intp, 0)
        for slot, (panel_type, panel_v) in enumerate(((signature.args[3], panel0_v),
                                                      (signature.args[4], panel1_v))):
            weights = _item_pointer(context, builder, panel_type, panel_v, [g_v, zero])
            _emit_dpbf16ps(builder, tile_v, [where], [slot], weights)
        return context.get_dummy_value()

    return types.none(tile, pairs, r, panel0, panel1, g), codegen


@intrinsic
def dpbf16ps_6_rows(typingctx, tile, pairs, r, panel, g):
    """Tile rows 0..5 += ``pairs[r + i, g]`` . ``panel[g]``."""
    def codegen(context, builder, signature, args):
        tile_v, pairs_v, r_v, panel_v, g_v = args
        where = [_item_pointer(context, builder, signature.args[1], pairs_v,
                               [builder.add(r_v, context.get_constant(types.intp, i)), g_v])
                 for i in range(6)]
        zero = context.get_constant(types.intp, 0)
        weights = _item_pointer(context, builder, signature.args[3], panel_v, [g_v, zero])
        _emit_dpbf16ps(builder, tile_v, where, range(6), weights)
        return context.get_dummy_value()

    return types.none(tile, pairs, r, panel, g), codegen


@intrinsic
def dpbf16ps_1_row(typingctx, tile, pairs, r, panel, g):
    """Tile row 0 += ``pairs[r, g]`` . ``panel[g]`` (one accumulator set: the
    same sums, in the same order, as a row of the taller tiles)."""
    def codegen(context, builder, signature, args):
        tile_v, pairs_v, r_v, panel_v, g_v = args
        where = _item_pointer(context, builder, signature.args[1], pairs_v, [r_v, g_v])
        zero = context.get_constant(types.intp, 0)
        weights = _item_pointer(context, builder, signature.args[3], panel_v, [g_v, zero])
        _emit_dpbf16ps(builder, tile_v, [where], [0], weights)
        return context.get_dummy_value()

    return types.none(tile, pairs, r, panel, g), codegen
