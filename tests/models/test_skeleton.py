import numpy as np

from posestream.models import skeleton as sk


def test_names_unique_and_17():
    assert sk.NUM_KEYPOINTS == 17
    assert len(set(sk.KEYPOINT_NAMES)) == 17
    assert sk.KEYPOINT_INDEX["nose"] == 0 and sk.KEYPOINT_INDEX["right_ankle"] == 16


def test_edges_valid_and_connected():
    seen = set()
    for a, b in sk.EDGES:
        assert 0 <= a < 17 and 0 <= b < 17 and a != b
        assert (a, b) not in seen and (b, a) not in seen
        seen.add((a, b))
    # one connected skeleton: a walk from the nose reaches every keypoint
    adj = {i: set() for i in range(17)}
    for a, b in sk.EDGES:
        adj[a].add(b)
        adj[b].add(a)
    stack, reached = [0], {0}
    while stack:
        for n in adj[stack.pop()] - reached:
            reached.add(n)
            stack.append(n)
    assert reached == set(range(17))


def test_flip_pairs_symmetric_left_right():
    used = set()
    for a, b in sk.FLIP_PAIRS:
        na, nb = sk.KEYPOINT_NAMES[a], sk.KEYPOINT_NAMES[b]
        assert na.startswith("left_") and nb.startswith("right_")
        assert na[len("left_") :] == nb[len("right_") :]
        assert not ({a, b} & used)
        used |= {a, b}
    # every left/right keypoint is in a pair, the nose is not
    assert used == {i for i, n in enumerate(sk.KEYPOINT_NAMES) if n != "nose"}
    perm = sk.flip_permutation()
    assert np.array_equal(perm[perm], np.arange(17))
    # flipping maps edges onto edges
    edges = {frozenset(e) for e in sk.EDGES}
    assert {frozenset((perm[a], perm[b])) for a, b in sk.EDGES} == edges


def test_limb_parents_are_same_side_edges_and_pairs_go_outward():
    edges = {frozenset(e) for e in sk.EDGES}
    side = [n.split("_")[0] if "_" in n else "" for n in sk.KEYPOINT_NAMES]
    assert len(sk.LIMB_PARENT) == 17
    for k, parent in enumerate(sk.LIMB_PARENT):
        if parent < 0:
            assert sk.KEYPOINT_NAMES[k] in (
                "nose",
                "left_shoulder",
                "right_shoulder",
                "left_hip",
                "right_hip",
            )
            continue
        assert frozenset((k, parent)) in edges
        assert side[parent] in (side[k], "")  # a left joint hangs off a left joint (or the nose)
    perm = sk.flip_permutation()
    assert all(sk.LIMB_PARENT[perm[k]] == (perm[p] if p >= 0 else -1) for k, p in enumerate(sk.LIMB_PARENT))
    order = sk.mirror_pairs_outward()
    assert sorted(order) == sorted(sk.FLIP_PAIRS)
    position = {j: i for i, pair in enumerate(order) for j in pair}
    for a, _ in order:
        if sk.LIMB_PARENT[a] in position:
            assert position[sk.LIMB_PARENT[a]] < position[a]  # parents are settled first


def test_oks_sigmas_symmetric_and_readonly():
    s = sk.OKS_SIGMAS
    assert s.shape == (17,)
    for a, b in sk.FLIP_PAIRS:
        assert s[a] == s[b]
    assert not s.flags.writeable
