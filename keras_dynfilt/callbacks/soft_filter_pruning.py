"""Soft Filter Pruning: zero the weakest filters while training from scratch."""

import warnings

import keras
import numpy as np

from keras_dynfilt._validation import (
    check_int,
    check_layer_names,
    check_positive_int,
)
from keras_dynfilt.callbacks import _sfp_masks
from keras_dynfilt.callbacks._sfp_selection import (
    check_rate,
    select_groups,
)
from keras_dynfilt.pruning import criteria
from keras_dynfilt.pruning.compaction import compact
from keras_dynfilt.pruning.cost import model_cost
from keras_dynfilt.pruning.criteria import pruned_count
from keras_dynfilt.pruning.masking import apply_group_masks, assign_unit_mask

#: The criteria SoftFilterPruning accepts by name (those that need no data).
CRITERIA = tuple(c for c in criteria.NAMES if c not in criteria.NEEDS_DATA)

__all__ = ["CRITERIA", "SoftFilterPruning", "pruned_count"]


class SoftFilterPruning(keras.callbacks.Callback):
    """Soft Filter Pruning (SFP): train and prune filters at the same time.

    At the start of training and after every `frequency`-th epoch (and the
    last), every prunable filter group of the model (see
    `keras_dynfilt.pruning.filter_groups`: convolutions or dense layers whose
    output channels meet in a residual add, MFM pairs, grouped convolutions
    are one group with one shared mask) is ranked by `criterion` and its
    `floor(N * rate)` weakest units get their filter weights (the
    producers' kernel slices) zeroed, as in the reference code. The zeroed
    filters keep training ("soft") and may come back at the next ranking;
    biases and BatchNormalization parameters are left alone meanwhile, so
    gradients still reach them. The last mask (after the last epoch, or at
    the end of a run stopped early) is the engine's full mask
    (`keras_dynfilt.pruning.apply_group_mask`: kernel slices, biases, and
    the BatchNormalization gamma and beta of those channels, so that they
    are exactly zero); after `fit`, `keras_dynfilt.pruning.compact(model)`
    (or `compact_model()`) returns the physically smaller model computing
    the same function as the masked one.

    The callback writes `sparsity` (fraction of the selected groups'
    producer filters zeroed by the latest mask) and `flops_fraction`
    (multiply-adds of the compacted model over those of the full one, as
    `keras_dynfilt.pruning.model_cost` counts them; not logged, with a
    warning, when some layers have no cost formula, since the fraction
    would cover only part of the network) into the epoch `logs`, so
    `History`, `CSVLogger` and TensorBoard placed after it in the callback
    list record them.

    The model `fit` returns is the model the last epoch validated: the
    final mask is applied before the last epoch's validation (Keras
    validates before `on_epoch_end`), so `val_*` of the last epoch equal
    `model.evaluate` after `fit` and the metrics of the compacted model.
    Earlier epochs are validated with that epoch's soft mask (kernels
    zeroed, biases and BatchNormalization shifts still in place). With
    `finetune_epochs=k`, the final mask is chosen at the start of the last
    `k` epochs and held while they train: it is re-applied after every
    training step (so neither momentum nor weight decay nor the BN shift
    gradients revive a pruned channel), and every one of those epochs
    validates the model that is shipped.
    With a `schedule` (tfmot's protocol, `schedule(step) -> (should_prune,
    sparsity)`, e.g. `keras_dynfilt.callbacks.PolynomialDecay`), the
    schedule is asked after every training batch with the number of
    optimizer steps done, and the model is masked at `sparsity` whenever
    `should_prune` is true, at the start of training when it is true there,
    and at the end of training (so the final model is always masked);
    `pruning_rate` and `frequency` are then not used. With
    `steps_per_execution > 1` Keras calls the callback once per execution;
    the schedule is then asked for every step of the execution and the
    model is masked at its end if a step in it was due (at the sparsity of
    the latest due step).

    Resuming (`keras.callbacks.BackupAndRestore`): no state is kept outside
    the model. At the first epoch of every `fit` the callback reads the
    model's zeroed units; if every group has exactly the number the current
    rate asks for, that is the current mask (a backup written after the
    mask, or a model already pruned), otherwise it masks afresh. Masks are a
    deterministic function of the weights, so a run resumed from a backup
    taken before or after an epoch's mask continues exactly as the
    uninterrupted one when a mask is due at every epoch (`frequency=1`);
    with `frequency > 1` a run resumed between two masks is masked at once.

    Masking uses `keras.ops` and `Variable.assign` only: it runs on every
    backend, and under `tf.distribute.MirroredStrategy` it updates every
    replica's copy (callbacks run in cross-replica context).

    Reference:
        - [He et al., Soft Filter Pruning for Accelerating Deep Convolutional
          Neural Networks (IJCAI 2018)](https://arxiv.org/abs/1808.06866)
        - [He et al., Filter Pruning via Geometric Median for Deep Convolutional
          Neural Networks Acceleration (CVPR 2019)](
          https://arxiv.org/abs/1811.00250) (the `"fpgm"` criterion)

    Args:
        pruning_rate: Float in [0, 1), the fraction of each group's units
            zeroed (`floor(N * rate)`, at least one unit kept), or a dict
            mapping layer names to such rates: a group is pruned at the rate
            of its named layers (coupled layers named with different rates
            are an error) and left alone when none of its layers is named.
        criterion: A name of `keras_dynfilt.pruning.criteria` that needs no
            data: `"l2"` (the paper: L2 norm of the flattened filter),
            `"l1"`, `"fpgm"` (filters nearest the geometric median of the
            group, by the sum of Euclidean distances to the others),
            `"bn_scale"`, `"lamp"`, `"random"`; or a callable mapping a
            `(N, D)` NumPy array of flattened filters to `N` scores (the
            lowest are zeroed). A unit's coupled filters are scored
            together (see `keras_dynfilt.pruning.criteria`).
        frequency: Integer >= 1, mask after every `frequency`-th epoch.
        layers: Optional list of layer names: prune only the groups that
            contain one of them (nested models' layers as `"outer/inner"`).
        exclude: Optional list of layer names: never prune a group that
            contains one of them.
        schedule: Optional callable `schedule(step) -> (should_prune,
            sparsity)` (tfmot's pruning-schedule protocol).
        finetune_epochs: Integer >= 0, the number of last epochs of `fit`
            that train with the final mask fixed (0: the final mask is
            applied right before the last validation).
        verbose: Integer, 1 prints a line at every mask.

    Examples:
        >>> model = keras.Sequential([
        ...     keras.Input((8, 8, 3)),
        ...     keras.layers.Conv2D(16, 3, activation="relu", name="conv"),
        ...     keras.layers.GlobalAveragePooling2D(),
        ...     keras.layers.Dense(10)])
        >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(
        ...     from_logits=True))
        >>> x = np.random.default_rng(0).random((32, 8, 8, 3), "float32")
        >>> y = np.arange(32) % 10
        >>> sfp = keras_dynfilt.callbacks.SoftFilterPruning(pruning_rate=0.25)
        >>> history = model.fit(x, y, epochs=2, callbacks=[sfp], verbose=0)
        >>> small = sfp.compact_model()  # or keras_dynfilt.pruning.compact
        >>> small.get_layer("conv").filters  # 4 of the 16 filters removed
        12
    """

    def __init__(
        self,
        pruning_rate=0.3,
        criterion="l2",
        frequency=1,
        layers=None,
        exclude=None,
        schedule=None,
        verbose=0,
        finetune_epochs=0,
    ):
        super().__init__()
        if isinstance(pruning_rate, dict):
            if not pruning_rate:
                raise ValueError(
                    "`pruning_rate` must not be an empty dict. "
                    "Received: pruning_rate={}"
                )
            for key, value in pruning_rate.items():
                if not isinstance(key, str):
                    raise TypeError(
                        "`pruning_rate` dict keys must be layer names. "
                        f"Received: key {key!r} of type {type(key).__name__}"
                    )
                check_rate(value, f"pruning_rate[{key!r}]")
            self.pruning_rate = {k: float(v) for k, v in pruning_rate.items()}
        else:
            self.pruning_rate = check_rate(pruning_rate)
        if not (
            callable(criterion)
            or isinstance(criterion, str) and criterion.lower() in CRITERIA
        ):
            raise ValueError(
                f"`criterion` must be one of {CRITERIA} or a callable. "
                f"Received: criterion={criterion!r}"
            )
        if isinstance(criterion, str):
            criterion = criterion.lower()
        self.criterion = criterion
        self.frequency = check_positive_int(frequency, "frequency")
        self.layers = check_layer_names(layers, "layers")
        self.exclude = check_layer_names(exclude, "exclude")
        if schedule is not None and not callable(schedule):
            raise TypeError(
                "`schedule` must be a callable `schedule(step) -> "
                "(should_prune, sparsity)`, e.g. keras_dynfilt.callbacks."
                f"ConstantSparsity. Received: schedule={schedule!r}"
            )
        if schedule is not None and isinstance(self.pruning_rate, dict):
            raise ValueError(
                "Pass either a per-layer `pruning_rate` dict or a "
                "`schedule` (one sparsity for every group), not both. "
                f"Received: pruning_rate={pruning_rate!r}, "
                f"schedule={schedule!r}"
            )
        self.schedule = schedule
        self.verbose = verbose
        self.finetune_epochs = check_int(
            finetune_epochs, "finetune_epochs", minimum=0, maximum=None
        )
        self.groups = None
        self.masks = None

    # -- set-up -------------------------------------------------------------
    # -- masking ------------------------------------------------------------
    def _rate(self, group_rate, sparsity):
        if self.schedule is not None:
            return sparsity
        return self.pruning_rate if group_rate is None else group_rate

    def _targets(self, sparsity=None):
        return [
            pruned_count(g.size, self._rate(r, sparsity))
            for g, r in self.groups
        ]

    def _sync_jax(self):
        # The JAX trainer keeps the variables in its own state during an
        # epoch; write them back so the masks apply to (and are picked up
        # by) the next step.
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()

    def _mask(self, sparsity=None, when="", final=False):
        self._sync_jax()
        groups = [g for g, _ in self.groups]
        masks = _sfp_masks.rank(
            groups, self._targets(sparsity), self.criterion
        )
        if final:  # one assignment per weight, all groups together
            apply_group_masks(dict(zip(groups, masks)))
        else:
            for group, keep in zip(groups, masks):
                if group not in self._soft:
                    self._soft[group] = _sfp_masks.soft_targets(group)
                assign_unit_mask(self._soft[group], keep)
        self.masks = masks
        self._final_done = final
        if self.verbose:
            stats = self._stats()
            print(
                f"SoftFilterPruning{when}: zeroed {stats['zeroed']} of "
                f"{stats['filters']} filters in {len(self.groups)} groups "
                f"(sparsity {stats['sparsity']:.3f}"
                + (
                    f", {100 * stats['flops_fraction']:.1f}% of the FLOPs"
                    if stats.get("flops_fraction") is not None
                    else ""
                )
                + ")"
            )

    def _adopt_existing(self, sparsity=None):
        """Uses the zeroed units as the mask if they match the targets."""
        masks = _sfp_masks.zeroed_units(
            [g for g, _ in self.groups], self._targets(sparsity)
        )
        if masks is None:
            return False
        self.masks = masks
        return True

    def _stats(self):
        filters = zeroed = 0
        for (group, _), keep in zip(self.groups, self.masks):
            per_unit = len(group.layers)
            filters += group.size * per_unit
            zeroed += int((~keep).sum()) * per_unit
        stats = {
            "filters": filters,
            "zeroed": zeroed,
            "sparsity": zeroed / filters,
        }
        key = tuple(int((~k).sum()) for k in self.masks)
        if self._full_macs:
            if key not in self._flops_cache:
                # Priced from the masks (MACs depend on the counts only):
                # no compacted model is built.
                masks = {g: k for (g, _), k in zip(self.groups, self.masks)}
                self._flops_cache[key] = (
                    model_cost(self.model, masks=masks, warn=False).macs
                    / self._full_macs
                )
            stats["flops_fraction"] = self._flops_cache[key]
        return stats

    def _schedule(self, step=None):
        step = self._step if step is None else step
        should, sparsity = self.schedule(step)
        should = bool(np.asarray(keras.ops.convert_to_numpy(should)))
        sparsity = float(np.asarray(keras.ops.convert_to_numpy(sparsity)))
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(
                "The `schedule` must return a sparsity in [0, 1). "
                f"Received: sparsity={sparsity} at step {step}"
            )
        return should, sparsity

    def _read_step(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return 0
        return int(keras.ops.convert_to_numpy(optimizer.iterations))

    # -- final mask ---------------------------------------------------------
    def _last_epoch(self, epoch):
        return bool(self.params) and epoch + 1 == self.params.get("epochs")

    def _in_finetune(self, epoch):
        epochs = (self.params or {}).get("epochs")
        return (
            self.finetune_epochs > 0
            and epochs is not None
            and epoch >= epochs - self.finetune_epochs
        )

    def _final_mask(self, when):
        """Ranks once more and applies the engine's full mask."""
        sparsity = None
        if self.schedule is not None:
            self._step = self._read_step()
            sparsity = self._schedule()[1]
        self._mask(sparsity, when=when, final=True)

    def _mask_final_as_adopted(self):
        self._final_done = True
        self._hold()

    def _hold(self):
        """Re-applies the final mask (the optimizer may have moved it)."""
        self._sync_jax()
        apply_group_masks(
            {group: keep for (group, _), keep in zip(self.groups, self.masks)}
        )

    # -- callback hooks -----------------------------------------------------
    def on_train_begin(self, logs=None):
        self.groups = select_groups(
            self.model, self.layers, self.exclude, self.pruning_rate,
            self.schedule,
        )
        self.masks = None
        self._final_done = False
        self._started = False
        self._in_fit = True
        self._flops_cache = {}
        self._soft = {}
        epochs = (self.params or {}).get("epochs")
        if self.finetune_epochs and epochs is not None and (
            self.finetune_epochs >= epochs
        ):
            raise ValueError(
                "`finetune_epochs` must be smaller than the `epochs` of "
                "`fit` (at least one epoch must train with soft masks). "
                f"Received: finetune_epochs={self.finetune_epochs}, "
                f"epochs={epochs}"
            )
        try:
            cost = model_cost(self.model, warn=False)
            self._full_macs = cost.macs
        except ValueError:
            warnings.warn(
                "SoftFilterPruning cannot count the FLOPs of a model whose "
                "input shape is not fully defined; `flops_fraction` is not "
                "logged.",
                UserWarning,
                stacklevel=2,
            )
            self._full_macs = None
        else:
            if not cost.complete:
                # A fraction of the layers it can price would report the
                # cut of part of the network as the cut of the whole.
                warnings.warn(
                    "SoftFilterPruning does not log `flops_fraction`: the "
                    f"cost of model {self.model.name!r} is incomplete. "
                    + cost._unknown_text(),
                    UserWarning,
                    stacklevel=2,
                )
                self._full_macs = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start_step = self._read_step()
        self._step = self._epoch_start_step
        if not self._started:
            # The first epoch of a fit (after BackupAndRestore restored the
            # weights): the "training begin" mask, or the state of a
            # resumed run.
            self._started = True
            sparsity = None
            if self.schedule is not None:
                should, sparsity = self._schedule()
            adopted = self._adopt_existing(sparsity)
            if adopted and self._in_finetune(epoch - 1):
                # Resumed inside the fine-tuning phase: the zeros are the
                # held final mask (re-ranking could move it under FPGM).
                self._mask_final_as_adopted()
            elif not adopted and self.schedule is None:
                self._mask(when=f" (epoch {epoch + 1} begin)")
            elif not adopted and (should or epoch > 0):
                self._mask(sparsity, when=f" (step {self._step})")
        if self._in_finetune(epoch) and not self._final_done:
            self._final_mask(
                when=f" (epoch {epoch + 1} begin, fine-tuning from here)"
            )

    def on_train_batch_end(self, batch, logs=None):
        if self._final_done:
            self._hold()
            return
        if self.schedule is None:
            return
        # `batch` is the last step of the execution: with
        # steps_per_execution > 1 several steps ran since the last call.
        previous = self._step
        self._step = self._epoch_start_step + batch + 1
        due = None
        for step in range(previous + 1, self._step + 1):
            should, sparsity = self._schedule(step)
            if should:
                due = (step, sparsity)
        if due is not None:
            self._mask(due[1], when=f" (step {due[0]})")

    def on_test_begin(self, logs=None):
        # Keras validates before on_epoch_end: mask the final model first,
        # so that the last epoch's val_* describe the returned model.
        if (
            getattr(self, "_in_fit", False)
            and self._started
            and not self._final_done
            and self._last_epoch(self._epoch)
        ):
            self._final_mask(when=f" (epoch {self._epoch + 1} validation)")

    def on_epoch_end(self, epoch, logs=None):
        if self._final_done:
            self._hold()
        elif self.schedule is None:
            last = self._last_epoch(epoch)
            if (epoch + 1) % self.frequency == 0 or last:
                self._mask(when=f" (epoch {epoch + 1} end)", final=last)
        elif self._last_epoch(epoch):
            self._final_mask(when=" (end)")
        if logs is not None and self.masks is not None:
            stats = self._stats()
            logs["sparsity"] = stats["sparsity"]
            if "flops_fraction" in stats:
                logs["flops_fraction"] = stats["flops_fraction"]

    def on_train_end(self, logs=None):
        # Training stopped early (EarlyStopping, ...): mask the final model.
        self._in_fit = False
        if self._started and not self._final_done:
            self._final_mask(when=" (train end)")

    # -- results --------------------------------------------------------------
    def compact_model(self):
        """The physically smaller model, without the zeroed filters.

        Re-applies the latest masks (a no-op right after `fit`) and returns
        `keras_dynfilt.pruning.compact(model, masks)`: a new, uncompiled
        Keras model computing the same function as the masked model.
        """
        if self.masks is None:
            raise ValueError(
                "`compact_model()` needs the masks of a `fit` run with this "
                "callback; none has run yet."
            )
        masks = {
            group: keep for (group, _), keep in zip(self.groups, self.masks)
        }
        apply_group_masks(masks)
        return compact(self.model, masks)
