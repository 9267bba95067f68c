import sys, numpy as np, tensorflow as tf
a = tf.train.load_checkpoint(sys.argv[1]); b = tf.train.load_checkpoint(sys.argv[2])
diffs = []
for name in a.get_variable_to_shape_map():
  if "OPTIMIZER" in name or name not in b.get_variable_to_shape_map(): continue
  x, y = a.get_tensor(name), b.get_tensor(name)
  if not isinstance(x, np.ndarray) or x.dtype.kind not in "fi": continue
  diffs.append((float(np.abs(x.astype(np.float64) - y).max()), name.split("/.ATTR")[0]))
diffs.sort(reverse=True)
print(diffs[:3], "identical:", sum(d[0] == 0 for d in diffs), "of", len(diffs))
