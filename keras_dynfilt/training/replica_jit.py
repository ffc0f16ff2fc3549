"""MirroredStrategy and XLA together.

With Keras 3 on TensorFlow, `model.compile(jit_compile=True)` wraps the
whole `strategy.run(train_step)` in one XLA function. Under a strategy with
two or more replicas that single cluster touches every replica's variables
and TensorFlow refuses it ("Trying to access resource ... located in device
CPU:1 from device CPU:0", keras-team/keras#19005).

The fix here compiles only what is local to a replica — the forward pass,
the loss and the gradients — with XLA, once per replica, and leaves the
cross-replica work (the gradient all-reduce inside `apply_gradients`, the
metric updates) to ordinary TensorFlow graph code outside XLA.
"""

import functools

import keras
import tensorflow as tf

from keras_dynfilt import _keras_private
from keras_dynfilt._keras_private import unscale_loss_for_distribution


def _multi_replica():
    return tf.distribute.get_strategy().num_replicas_in_sync > 1


def _loss_and_gradients(model, x, y, sample_weight):
    with tf.GradientTape() as tape:
        if _keras_private.call_has_training_arg(model):
            y_pred = model(x, training=True)
        else:
            y_pred = model(x)
        loss = _keras_private.compute_loss(
            model,
            x=x,
            y=y,
            y_pred=y_pred,
            sample_weight=sample_weight,
            training=True,
        )
        scaled = model.optimizer.scale_loss(loss) if model.optimizer else loss
    gradients = tape.gradient(scaled, model.trainable_weights)
    return loss, y_pred, gradients


def replica_jit_gradients(model, x, y=None, sample_weight=None):
    """Loss, predictions and gradients of one replica's batch, under XLA.

    The function is compiled with `tf.function(jit_compile=True)` once per
    model and called inside `strategy.run`, so each replica gets its own XLA
    cluster that touches only its own copies of the variables.
    """
    fn = getattr(model, "_replica_grad_fn", None)
    if fn is None:
        fn = tf.function(
            lambda x, y, sw: _loss_and_gradients(model, x, y, sw),
            jit_compile=True,
            reduce_retracing=True,
        )
        model._replica_grad_fn = fn
    return fn(x, y, sample_weight)


def replica_jit_train_step(model, data):
    """Keras's default `train_step` with the replica-local part under XLA."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    loss, y_pred, gradients = replica_jit_gradients(model, x, y, sample_weight)
    _keras_private.loss_tracker(model).update_state(
        unscale_loss_for_distribution(loss),
        sample_weight=tf.shape(
            next(i for i in keras.tree.flatten(x) if i is not None)
        )[0],
    )
    if model.trainable_weights:
        # Outside XLA: apply_gradients all-reduces across replicas.
        model.optimizer.apply_gradients(zip(gradients, model.trainable_weights))
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def _is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def local_symbolic_build(model, iterator=None, data_batch=None):
    """Keras's pre-`fit` symbolic build, without a cross-worker reduce.

    Keras builds the model from the first distributed batch by *reducing* it
    across replicas in eager mode, which `MultiWorkerMirroredStrategy`
    rejects ("Attempt to convert a value (PerReplica ...)", Keras 3 with
    multi-worker training, keras-team/keras#20585). The build only needs the
    batch's structure and dtypes, so this takes one local replica's values.
    """
    strategy = model.distribute_strategy
    if iterator is not None and data_batch is None:
        for _, _, it in iterator:
            batch = next(it)
            data_batch = keras.tree.map_structure(
                lambda v: (
                    strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues)
                    else v
                ),
                batch,
            )
            break
    with strategy.scope():
        _keras_private.symbolic_build(model, data_batch)


def vectorize_logs(logs):
    """Gives scalar step outputs shape (1,) for a multi-worker reduce.

    Keras 3 reduces each step's logs across workers with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on the scalar
    metric values every step returns ("Invalid reduction dimension 0 for
    input with 0 dimensions"). With shape (1,) the same reduce is the mean
    over replicas, as on one worker.
    """
    return keras.tree.map_structure(
        lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, logs
    )


def _has_custom_train_step(model):
    return type(model).train_step is not keras.Model.train_step and not (
        isinstance(model, ReplicaJitMixin)
    )


def compile_replica_jit(model, *args, jit_compile="auto", **kwargs):
    """`model.compile(...)` that makes MirroredStrategy + XLA work in place.

    With `jit_compile=True` under a strategy with more than one replica, the
    model is compiled with `jit_compile=False` and its `train_step` is
    replaced (on this instance only) by `replica_jit_train_step`, which runs
    the per-replica forward and backward pass under XLA. Otherwise this is
    exactly `model.compile(*args, jit_compile=jit_compile, **kwargs)`.
    Under `MultiWorkerMirroredStrategy` the pre-`fit` symbolic build is also
    replaced by `local_symbolic_build` (Keras 3 cannot `fit` there without).

    Models with their own `train_step` should subclass `ReplicaJitMixin`
    and call `self.replica_jit_gradients(...)` instead; passing one here with
    `jit_compile=True` under several replicas raises a `TypeError`.

    Returns:
        The model, compiled.
    """
    if isinstance(model, ReplicaJitMixin):
        model.compile(*args, jit_compile=jit_compile, **kwargs)
        return model
    multi_worker = _is_multi_worker(tf.distribute.get_strategy())
    if multi_worker:
        _keras_private.set_symbolic_build(
            model,
            lambda iterator=None, data_batch=None: local_symbolic_build(
                model, iterator, data_batch
            ),
        )
        test_step = model.test_step
        model.test_step = lambda data: vectorize_logs(test_step(data))
    if jit_compile is True and _multi_replica():
        if _has_custom_train_step(model):
            raise TypeError(
                f"{type(model).__name__} defines its own `train_step`, which "
                "compile_replica_jit cannot rewrite. Subclass "
                "keras_dynfilt.training.ReplicaJitMixin and compute gradients "
                "with `self.replica_jit_gradients(x, y, sample_weight)`. "
                f"Received: model={model.name!r}"
            )
        model.compile(*args, jit_compile=False, **kwargs)
        model._replica_grad_fn = None
        model._replica_jit = True
        step = functools.partial(replica_jit_train_step, model)
    else:
        model.compile(*args, jit_compile=jit_compile, **kwargs)
        step = None
    if multi_worker:
        base = step or model.train_step
        step = lambda data: vectorize_logs(base(data))  # noqa: E731
    if step is not None:
        # This instance only; the class and its saved config are unchanged.
        model.train_step = step
    return model


class ReplicaJitMixin:
    """Mixin for `keras.Model` subclasses: per-replica XLA training steps.

    `compile(jit_compile=True)` under a `tf.distribute` strategy with more
    than one replica compiles the per-replica forward and backward pass with
    XLA and applies the all-reduced gradients outside XLA; everywhere else
    (one replica, `jit_compile=False`, other backends' semantics) it behaves
    exactly like `keras.Model.compile`.

    Under `MultiWorkerMirroredStrategy` it also builds the model from one
    local replica's batch (see `local_symbolic_build`), without which Keras 3
    cannot `fit` there at all.

    Custom `train_step`s keep working: call
    `self.replica_jit_gradients(x, y, sample_weight)` to get
    `(loss, y_pred, gradients)` computed with per-replica XLA when enabled,
    then apply them as usual.
    """

    def compile(self, *args, jit_compile="auto", **kwargs):
        self._replica_jit = bool(jit_compile is True and _multi_replica())
        if self._replica_jit:
            # The outer step stays a plain tf.function; XLA goes inside.
            jit_compile = False
        super().compile(*args, jit_compile=jit_compile, **kwargs)
        self._replica_grad_fn = None

    def get_compile_config(self):
        config = super().get_compile_config()
        if config and self.replica_jit:
            # Keras saw jit_compile=False (XLA moved inside the replica
            # step); save what the user asked for.
            config["jit_compile"] = True
        return config

    def compile_from_config(self, config):
        # Keras skips compile-on-load for models whose `compile` is
        # overridden; this one only adds per-replica XLA, so it is safe to
        # call. Loaded under a strategy scope, XLA goes per replica again.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def replica_jit(self):
        """True when training steps use per-replica XLA compilation."""
        return getattr(self, "_replica_jit", False)

    def replica_jit_gradients(self, x, y=None, sample_weight=None):
        """Loss, predictions and gradients of one replica's batch.

        Compiled with XLA per replica when the model was compiled with
        `jit_compile=True` under a multi-replica strategy; otherwise traced
        into the surrounding step function as usual.
        """
        if not self.replica_jit:
            return _loss_and_gradients(self, x, y, sample_weight)
        return replica_jit_gradients(self, x, y, sample_weight)

    def train_step(self, data):
        if self.replica_jit:
            logs = replica_jit_train_step(self, data)
        else:
            logs = super().train_step(data)
        return self._maybe_vectorize(logs)

    def test_step(self, data):
        return self._maybe_vectorize(super().test_step(data))

    def _maybe_vectorize(self, logs):
        if _is_multi_worker(self.distribute_strategy):
            return vectorize_logs(logs)
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = _keras_private.explicit_distribute_strategy(self)
        if strategy is None or not _is_multi_worker(strategy):
            return _keras_private.base_symbolic_build(
                ReplicaJitMixin, self, iterator, data_batch
            )
        return local_symbolic_build(self, iterator, data_batch)


@keras.saving.register_keras_serializable(package="keras_dynfilt")
class ReplicaJitModel(ReplicaJitMixin, keras.Model):
    """A `keras.Model` that trains with MirroredStrategy *and* XLA.

    Build it like a functional model (`ReplicaJitModel(inputs, outputs)`) or
    wrap an existing one with `ReplicaJitModel.wrap(model)`; then
    `compile(..., jit_compile=True)` under `strategy.scope()`. See
    `ReplicaJitMixin` for the mechanism and for custom `train_step`s.

    Examples:
        >>> strategy = keras_dynfilt.training.cpu_mirrored_strategy()
        >>> with strategy.scope():
        ...     base = keras.Sequential([keras.Input((4,)),
        ...                              keras.layers.Dense(3)])
        ...     model = keras_dynfilt.training.ReplicaJitModel.wrap(base)
        ...     model.compile("sgd", "mse", jit_compile=True)
        >>> x, y = np.ones((8, 4), "float32"), np.zeros((8, 3), "float32")
        >>> history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
        >>> len(history.history["loss"])
        2
    """

    @classmethod
    def wrap(cls, model):
        """A `ReplicaJitModel` sharing `model`'s layers and weights."""
        if not isinstance(model, keras.Model) or not hasattr(model, "inputs"):
            raise TypeError(
                "`model` must be a functional or Sequential keras.Model. "
                f"Received: model={model!r}"
            )
        return cls(model.inputs, model.outputs, name=model.name)
