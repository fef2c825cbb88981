"""Train a small Keras classifier on scikit-learn's digits (8x8 images, shipped
inside scikit-learn, so no download).

With --data-folder PATH (e.g. an input given as {download: s3://...}), the data comes
from PATH/digits.npz instead (arrays x: N x 64 pixel values 0-16, y: labels), and the
chief also writes the logits of the first samples to ./outputs/predictions.json, so
an exported model can be checked against TensorFlow's own predictions.

Runs unchanged on one node, under MultiWorkerMirroredStrategy (TF_CONFIG with
workers only) and under ParameterServerStrategy (TF_CONFIG with chief, workers
and ps: the chief coordinates, workers and ps serve). tfbuild's agent sets
TF_CONFIG; this script only reads it.

Writes the model to ./outputs, TensorBoard logs to ./logs, and a summary with
the loss history and a digest of the final weights to ./outputs/summary.json.
"""

import argparse
import hashlib
import json
import os
import tempfile

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

PREDICTED = 32  # samples whose predictions go to outputs/predictions.json


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--output-dir", default="outputs")
    p.add_argument("--log-dir", default="logs")
    p.add_argument("--data-folder", help="a folder holding digits.npz (default: scikit-learn's)")
    return p.parse_args()


def load_data(folder=None):
    if folder:
        with np.load(os.path.join(folder, "digits.npz")) as f:
            data, target = f["x"], f["y"]
    else:
        digits = load_digits()
        data, target = digits.data, digits.target
    x = (data / 16.0).astype("float32")
    y = target.astype("int64")
    return x, y


def build_model(hidden, learning_rate):
    model = tf.keras.Sequential(
        [
            tf.keras.layers.Input(shape=(64,)),
            tf.keras.layers.Dense(hidden, activation="relu"),
            tf.keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=tf.keras.optimizers.SGD(learning_rate=learning_rate),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def weights_digest(model):
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def main():
    args = parse_args()
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = tf_config.get("cluster", {})
    task = tf_config.get("task", {"type": "chief", "index": 0})
    task_type, task_index = task.get("type", "chief"), int(task.get("index", 0))
    x, y = load_data(args.data_folder)

    if "ps" in cluster:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        if task_type in ("worker", "ps"):
            # Workers and parameter servers only serve; the agent stops them when
            # the chief is done.
            print(f"{task_type} {task_index}: serving", flush=True)
            server = tf.distribute.Server(
                resolver.cluster_spec(), job_name=task_type, task_index=task_index,
                protocol=resolver.rpc_layer or "grpc", start=True,
            )
            server.join()
            return
        strategy = tf.distribute.ParameterServerStrategy(resolver)
        mode = "parameter-server"
    elif len(cluster.get("worker", [])) > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        mode = "multi-worker"
    else:
        strategy = tf.distribute.get_strategy()
        mode = "single-node"

    is_chief = task_type == "chief" or (mode != "parameter-server" and task_index == 0)
    print(f"mode={mode} task={task_type}:{task_index} replicas={strategy.num_replicas_in_sync}",
          flush=True)

    with strategy.scope():
        model = build_model(args.hidden, args.learning_rate)

    global_batch = args.batch_size * max(1, strategy.num_replicas_in_sync)
    steps_per_epoch = max(1, len(x) // global_batch)

    def dataset_fn(input_context=None):
        ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=1).repeat()
        batch = global_batch
        if input_context is not None:
            batch = input_context.get_per_replica_batch_size(global_batch)
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        return ds.batch(batch).prefetch(2)

    # Non-chief workers still run every callback (saving runs collectives) but
    # write to a scratch folder.
    scratch = tempfile.mkdtemp()
    log_dir = os.path.join(args.log_dir if is_chief else scratch, "tensorboard")
    callbacks = [tf.keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch")]
    if mode == "parameter-server":
        data = tf.keras.utils.experimental.DatasetCreator(dataset_fn)
    elif mode == "multi-worker":
        options = tf.distribute.InputOptions()
        data = strategy.distribute_datasets_from_function(dataset_fn, options)
    else:
        data = dataset_fn()
    history = model.fit(data, epochs=args.epochs, steps_per_epoch=steps_per_epoch,
                        callbacks=callbacks, verbose=2)

    out_dir = args.output_dir if is_chief else os.path.join(scratch, "outputs")
    os.makedirs(out_dir, exist_ok=True)
    model.save(os.path.join(out_dir, "model.keras"))
    losses = [float(v) for v in history.history["loss"]]
    summary = {
        "mode": mode,
        "task": f"{task_type}:{task_index}",
        "replicas": strategy.num_replicas_in_sync,
        "loss": losses,
        "weights_sha256": weights_digest(model),
    }
    # Every task records its own summary (the store keeps non-chief tasks apart).
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    if args.data_folder and is_chief:
        # A plain eager call (not predict()): no collectives, so the chief alone can run it.
        logits = np.asarray(model(x[:PREDICTED], training=False))
        with open(os.path.join(args.output_dir, "predictions.json"), "w") as f:
            json.dump({"samples": PREDICTED, "logits": logits.tolist()}, f)
    print(f"final loss {losses[-1]:.4f} (first {losses[0]:.4f})", flush=True)


if __name__ == "__main__":
    main()
