"""Generates the small .npy test files in this folder (run with numpy installed).

cls_labels.npy: exactly what IRN's voc12/make_cls_labels.py writes -- np.save of a dict whose
keys are np.int32 ids (underscore dropped) and whose values are float32[20] multi-hot vectors.
cls_labels_p2.npy / _p4.npy: the same dict pickled with protocols 2 and 4 (numpy.save uses a
fixed protocol; older and newer numpy differ), with plain int keys in _p2.
train_labels.npy: a COCO-style float32 [3, 80] array (non-object dtype).
labels_f64_fortran.npy: a float64 [2, 3] Fortran-ordered array; labels_be_i2.npy: >i2 [4].
"""
import pickle
import numpy as np

N = 20
d = {}
for sid, classes in [("2007_000032", [0, 14]), ("2007_000039", [19]), ("2011_003276", [4, 8, 17])]:
    v = np.zeros(N, np.float32)
    v[classes] = 1
    d[np.int32(int(sid.replace("_", "")))] = v
np.save("cls_labels.npy", d)


def save_pickled(name, obj, protocol):
    arr = np.empty((), dtype=object)
    arr[()] = obj
    with open(name, "wb") as f:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(arr))
        pickle.dump(arr, f, protocol=protocol)


save_pickled("cls_labels_p2.npy", {int(k): v for k, v in d.items()}, 2)
save_pickled("cls_labels_p4.npy", d, 4)

t = np.zeros((3, 80), np.float32)
t[0, [0, 79]] = 1
t[1, 5] = 1
t[2, [10, 11, 12]] = 1
np.save("train_labels.npy", t)
np.save("labels_f64_fortran.npy", np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)))
np.save("labels_be_i2.npy", np.array([1, -2, 300, 0], dtype=">i2"))
