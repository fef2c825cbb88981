"""Horovod Keras training for the MPI backend tests: ranks start from different
random weights, BroadcastGlobalVariablesCallback makes them equal, the
DistributedOptimizer keeps them equal; every rank prints a digest of its final
weights and rank 0 saves the model to ./outputs. `--fail-rank N`: rank N raises
after hvd.init(), while the others wait for it in the initial broadcast."""

import argparse
import hashlib
import json
import os

import horovod.tensorflow.keras as hvd
import numpy as np
import tensorflow as tf

parser = argparse.ArgumentParser()
parser.add_argument("--fail-rank", type=int, default=-1)
args = parser.parse_args()

hvd.init()
rank, size = hvd.rank(), hvd.size()
if rank == args.fail_rank:
    raise RuntimeError(f"rank {rank} fails on purpose")
tf.random.set_seed(100 + rank)  # different initial weights on every rank

data = np.random.default_rng(0)
x = data.normal(size=(512, 8)).astype("float32")
y = (x @ np.arange(1, 9, dtype="float32") + 0.5).reshape(-1, 1)
x, y = x[rank::size], y[rank::size]

model = tf.keras.Sequential([
    tf.keras.layers.Input(shape=(8,)),
    tf.keras.layers.Dense(16, activation="relu"),
    tf.keras.layers.Dense(1),
])
opt = hvd.DistributedOptimizer(tf.keras.optimizers.SGD(learning_rate=0.01 * size))
model.compile(loss="mse", optimizer=opt)
history = model.fit(x, y, batch_size=32, epochs=3, verbose=0,
                    callbacks=[hvd.callbacks.BroadcastGlobalVariablesCallback(0)])

digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
print("HOROVOD " + json.dumps({"rank": rank, "size": size, "weights": digest,
                               "loss": float(history.history["loss"][-1]),
                               "keras": tf.keras.__name__,
                               "legacy": os.environ.get("TF_USE_LEGACY_KERAS")}), flush=True)
if rank == 0:
    os.makedirs("outputs", exist_ok=True)
    model.save(os.path.join("outputs", "model.keras"))
    print("saved outputs/model.keras", flush=True)
