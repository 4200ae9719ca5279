"""Every bad input to nblstm.packing raises a clear TypeError / ValueError.

Each message must name the argument, show the bad value and say how to fix it.
"""

import numpy as np
import pytest

import nblstm.packing as P

X = np.zeros((5, 3, 2), dtype=np.float32)


def packed():
    return P.pack_padded_sequence(X, [3, 2, 1])


def test_unsorted_lengths_with_enforce_sorted():
    match = (r"`lengths` array must be sorted in decreasing order when `enforce_sorted` is True\. "
             r"You can pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence to "
             r"sidestep this requirement if you do not need ONNX exportability\. "
             r"Got lengths=\[3, 4, 2\]")
    with pytest.raises(ValueError, match=match):
        P.pack_padded_sequence(X, [3, 4, 2])
    with pytest.raises(ValueError, match=r"enforce_sorted=False.*Got lengths=\[1, 2\]"):
        P.pack_sequence([np.zeros(1), np.zeros(2)])


def test_lengths_count_mismatch():
    with pytest.raises(ValueError, match=r"Expected `len\(lengths\)` to be equal to batch_size, "
                                         r"but got 2 \(batch_size=3\)\. Pass exactly one length"):
        P.pack_padded_sequence(X, [3, 2])
    with pytest.raises(ValueError, match=r"but got 5 \(batch_size=3\)"):
        P.pack_padded_sequence(np.zeros((3, 5)), [1] * 5, batch_first=True)
    with pytest.raises(ValueError, match=r"`len\(lengths\)`.*got 2 \(batch_size=3\)"):
        P.unpad_sequence(X, [1, 1])


def test_negative_lengths():
    match = r"found lengths\[2\] = -1 .*zero-length sequences are allowed, negative ones are not"
    with pytest.raises(ValueError, match=match):
        P.pack_padded_sequence(X, [3, 2, -1])
    with pytest.raises(ValueError, match=r"lengths\[0\] = -4"):
        P.unpad_sequence(X, [-4, 1, 1])


def test_lengths_longer_than_input():
    match = r"lengths\[0\] = 6, longer than the 5 time steps .* pad the input to at least 6 steps"
    with pytest.raises(ValueError, match=match):
        P.pack_padded_sequence(X, [6, 2, 1])
    with pytest.raises(ValueError, match=r"lengths\[1\] = 4, longer than the 3 time steps.*batch_first"):
        P.pack_padded_sequence(np.zeros((2, 3)), [1, 4], batch_first=True, enforce_sorted=False)
    with pytest.raises(ValueError, match=r"lengths\[2\] = 9, longer than the 5 time steps"):
        P.unpad_sequence(X, [1, 1, 9])


@pytest.mark.parametrize("lengths", [[3.5, 2, 1], np.array([3.0, 2.0, 1.0]), [True, True, False]])
def test_non_integer_lengths(lengths):
    with pytest.raises(TypeError, match=r"`lengths` must contain integers, got dtype (float64|bool).*"
                                        r"np\.asarray\(lengths, dtype=np\.int64\)"):
        P.pack_padded_sequence(X, lengths)


def test_lengths_not_1d():
    with pytest.raises(ValueError, match=r"`lengths` must be 1-D .*got shape \(1, 3\)"):
        P.pack_padded_sequence(X, [[3, 2, 1]])
    with pytest.raises(ValueError, match=r"`lengths` must be 1-D .*got shape \(\)"):
        P.unpad_sequence(X, 3)


@pytest.mark.parametrize("shape", [(), (5,)])
def test_input_too_few_dimensions(shape):
    match = r"`input` must have at least 2 dimensions.*got shape \(" + ",".join(map(str, shape))
    with pytest.raises(ValueError, match=match):
        P.pack_padded_sequence(np.zeros(shape), [1])
    with pytest.raises(ValueError, match=r"`padded_sequences` must have at least 2 dimensions"):
        P.unpad_sequence(np.zeros(shape), [1])


def test_non_numeric_input():
    with pytest.raises(TypeError, match=r"`input` must hold numbers .*got dtype <U1"):
        P.pack_padded_sequence(np.array([["a", "b"]]), [1, 1])
    with pytest.raises(TypeError, match=r"`sequences\[1\]` must hold numbers .*got dtype object"):
        P.pad_sequence([np.zeros(2), np.array([None, 1], dtype=object)])
    with pytest.raises(TypeError, match=r"`input` must be a numeric array"):
        P.pack_padded_sequence([[1, 2], [3]], [1, 1])


@pytest.mark.parametrize("fn", [P.pad_sequence, P.pack_sequence])
def test_empty_sequence_list(fn):
    with pytest.raises(ValueError, match=r"received an empty list of sequences: `sequences` must hold "
                                         r"at least one array"):
        fn([])
    with pytest.raises(ValueError, match=r"received an empty list of sequences"):
        fn(iter([]))


@pytest.mark.parametrize("fn", [P.pad_sequence, P.pack_sequence])
def test_bad_sequence_shapes(fn):
    with pytest.raises(ValueError, match=r"`sequences\[0\]` has shape \(L, 3\) but `sequences\[1\]` "
                                         r"has shape \(2, 2\)\. Reshape or pad"):
        fn([np.zeros((2, 3)), np.zeros((2, 2))])
    with pytest.raises(ValueError, match=r"`sequences\[1\]` must have at least 1 dimension .*0-d"):
        fn([np.zeros(2), np.float32(1.0)])
    with pytest.raises(TypeError, match=r"`sequences` must be a list of arrays"):
        fn(3)


def test_bad_padding_side():
    with pytest.raises(ValueError, match=r"Expected padding_side to be one of left or right, but got "
                                         r"'up'\. Pass padding_side='right'"):
        P.pad_sequence([np.zeros(2)], padding_side="up")
    with pytest.raises(ValueError, match=r"but got None"):
        P.pad_sequence([np.zeros(2)], padding_side=None)


def test_bad_padding_value():
    with pytest.raises(TypeError, match=r"`padding_value` must be a number, got 'x'"):
        P.pad_sequence([np.zeros(2)], padding_value="x")
    with pytest.raises(TypeError, match=r"`padding_value` must be a number, got \[1, 2\]"):
        P.pad_packed_sequence(packed(), padding_value=[1, 2])


def test_total_length_too_small():
    match = (r"Expected total_length to be at least the length of the longest sequence in input, "
             r"but got total_length=2 and max sequence length being 3\. Pass total_length >= 3")
    with pytest.raises(ValueError, match=match):
        P.pad_packed_sequence(packed(), total_length=2)


@pytest.mark.parametrize("total_length", [2.5, "4", True])
def test_total_length_not_integer(total_length):
    with pytest.raises(TypeError, match=r"`total_length` must be an integer or None, got"):
        P.pad_packed_sequence(packed(), total_length=total_length)


@pytest.mark.parametrize("fn", [P.pad_packed_sequence, P.unpack_sequence])
def test_not_a_packed_sequence(fn):
    with pytest.raises(TypeError, match=r"must be a PackedSequence \(from pack_padded_sequence or "
                                        r"pack_sequence\), got (tuple|ndarray)"):
        fn((X, np.array([1])))
    with pytest.raises(TypeError, match=r"got ndarray"):
        fn(X)


BAD_FIELDS = [
    (dict(batch_sizes=np.array([1, 2, 3])), r"`sequence\.batch_sizes` must be non-increasing, got \[1, 2, 3\]"),
    (dict(batch_sizes=np.array([3, 3, 0])), r"`sequence\.batch_sizes` must be positive, got \[3, 3, 0\]"),
    (dict(batch_sizes=np.array([3, 2, 2])), r"`sequence\.data` has 6 rows but sum\(`sequence\.batch_sizes`\) = 7"),
    (dict(batch_sizes=np.array([3.0, 2.0, 1.0])), r"`sequence\.batch_sizes` must contain integers, got dtype float64"),
    (dict(data=np.zeros((5, 2))), r"`sequence\.data` has 5 rows but sum\(`sequence\.batch_sizes`\) = 6"),
    (dict(data=np.array(1.0)), r"`sequence\.data` must have at least 1 dimension"),
    (dict(sorted_indices=np.array([0, 1])), r"`sequence\.batch_sizes\[0\]` = 3 sequences but the indices of "
                                            r"`sequence` list only 2"),
    (dict(sorted_indices=np.array([0, 1, 1])), r"`sequence\.sorted_indices` must be a permutation of 0\.\.2, "
                                               r"got \[0, 1, 1\]"),
    (dict(sorted_indices=np.array([0, 1, 3])), r"must be a permutation of 0\.\.2, got \[0, 1, 3\]"),
    (dict(unsorted_indices=np.array([2, -1, 0])), r"`sequence\.unsorted_indices` must be a permutation"),
    (dict(sorted_indices=np.array([0, 1, 2]), unsorted_indices=np.array([0, 1])),
     r"`sequence\.unsorted_indices` has 2 entries but `sequence\.sorted_indices` has 3"),
    (dict(sorted_indices=np.array([1, 2, 0]), unsorted_indices=np.array([1, 2, 0])),
     r"`sequence\.unsorted_indices` \[1, 2, 0\] is not the inverse of `sequence\.sorted_indices` \[1, 2, 0\]"),
]


@pytest.mark.parametrize("fields, match", BAD_FIELDS)
def test_inconsistent_packed_sequence(fields, match):
    bad = packed()._replace(**fields)
    error = TypeError if "integers" in match else ValueError
    with pytest.raises(error, match=match):
        P.pad_packed_sequence(bad)
    with pytest.raises(error, match=match.replace(r"`sequence", r"`packed_sequences")):
        P.unpack_sequence(bad)


def test_errors_leave_arguments_alone():
    x = X.copy()
    lengths = np.array([3, 4, 2])
    with pytest.raises(ValueError):
        P.pack_padded_sequence(x, lengths)
    assert np.array_equal(x, X) and np.array_equal(lengths, [3, 4, 2])
