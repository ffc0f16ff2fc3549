import keras

from keras_dynfilt._validation import (
    check_bool,
    check_float,
    check_image_shape,
    check_name,
    check_positive_int,
)
from keras_dynfilt.layers.cross_stitch import CrossStitch
from keras_dynfilt.layers.nddr import DEFAULT_WEIGHT_DECAY, NDDR
from keras_dynfilt.optimizers.lr_multiplier import set_lr_multiplier

FUSIONS = ("nddr", "cross_stitch", "none", "shared")


def conv_stage(filters, num_convs=1, kernel_size=3, pool=True,
               batch_norm=True, batch_norm_momentum=0.99, name="stage"):
    """A stage factory for `nddr_network`: `num_convs` x (conv-BN-ReLU) + pool.

    Calling the returned factory with a task index (or `None` for a shared
    stage) returns a new `keras.Sequential` each time, so every task gets its
    own weights. This is the VGG stage structure the paper fuses after
    (`pool1` ... `pool5`).

    Args:
        filters: Positive integer, the stage width.
        num_convs: Positive integer, convolutions in the stage.
        kernel_size: Convolution kernel size.
        pool: Boolean, end with a 2x2 max-pooling.
        batch_norm: Boolean, batch-normalise after each convolution.
        batch_norm_momentum: Momentum of the moving statistics. Short runs
            need a lower value (e.g. 0.9): with 0.99 the moving variance
            needs ~1000 steps to forget its initial 1.
        name: String, the prefix of the Sequential's name
            (`"{name}_task{k}"` or `"{name}_shared"`).

    Returns:
        A callable `factory(task) -> keras.Sequential`.
    """
    check_positive_int(filters, "filters")
    check_positive_int(num_convs, "num_convs")
    for size in (
        kernel_size if isinstance(kernel_size, (tuple, list)) else [kernel_size]
    ):
        check_positive_int(size, "kernel_size")
    check_bool(pool, "pool")
    check_bool(batch_norm, "batch_norm")
    check_float(
        batch_norm_momentum, "batch_norm_momentum", 0.0, 1.0, max_open=True
    )
    check_name(name)

    def factory(task):
        suffix = "shared" if task is None else f"task{task}"
        layers = []
        for _ in range(num_convs):
            layers.append(keras.layers.Conv2D(
                filters, kernel_size, padding="same", use_bias=not batch_norm
            ))
            if batch_norm:
                layers.append(keras.layers.BatchNormalization(
                    momentum=batch_norm_momentum))
            layers.append(keras.layers.ReLU())
        if pool:
            layers.append(keras.layers.MaxPooling2D(2, padding="same"))
        return keras.Sequential(layers, name=f"{name}_{suffix}")

    return factory


def _check_int(value, argument, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"`{argument}` must be an integer >= {minimum}. "
            f"Received: {argument}={value!r}"
        )


def nddr_network(
    input_shape,
    stages,
    heads,
    fusion="nddr",
    shortcut=False,
    nddr_kwargs=None,
    cross_stitch_kwargs=None,
    shared_stages=None,
    shortcut_channels=None,
    shortcut_lr_multiplier=None,
    task_names=None,
    name=None,
):
    """Builds K task networks fused by NDDR layers (NDDR-CNN) or a baseline.

    Every task runs the same stage structure with its own weights; after
    each stage the K stage outputs are fused. One builder makes the
    paper's network and its baselines, so that they differ only in the
    fusion:

    - `"nddr"`: an `NDDR` layer after every stage (NDDR-CNN);
    - `"cross_stitch"`: a `CrossStitch` unit after every stage;
    - `"none"`: no fusion, K single-task networks side by side (trained with
      one loss per output, they are exactly K single-task networks);
    - `"shared"`: the "multi-task baseline": the first `shared_stages` stages
      are one shared trunk, the rest (by default the last stage) and the
      heads are per task.

    `shortcut=True` builds NDDR-CNN-Shortcut: for each task, the fused output
    of every stage is resized bilinearly to the last stage's spatial size,
    the maps are concatenated on channels and reduced by a 1x1 convolution
    (no bias, L2 weight decay as in `NDDR`), batch normalization and ReLU to
    the head's input width. The shortcut layers are tagged with
    `shortcut_lr_multiplier` for `keras_dynfilt.optimizers.
    LearningRateMultiplier`; they are named `shortcut_task{k}_*`, so
    `multipliers={"nddr|shortcut": 100.0}` selects the NDDR-rate variables of
    a reloaded model too.

    Reference:
        - [Gao et al., NDDR-CNN: Layerwise Feature Fusing in Multi-Task CNNs by
          Neural Discriminative Dimensionality Reduction (CVPR
          2019)](https://arxiv.org/abs/1801.08297), figures 1 and 2.

    Args:
        input_shape: Tuple `(height, width, channels)` of positive integers;
            all tasks read the same image.
        stages: Non-empty sequence of stage factories. `stage(task)` must
            return a new callable layer (e.g. a `keras.Sequential`) for each
            task index, or for `None` (a shared-trunk stage), mapping a
            `(batch, H, W, C)` tensor to a `(batch, H', W', C')` tensor. See
            `conv_stage`.
        heads: Sequence of K callables (layers), one per task, mapping the
            last feature map (or the shortcut output) to the task output.
        fusion: One of `"nddr"`, `"cross_stitch"`, `"none"`, `"shared"`.
        shortcut: Boolean, build the shortcut variant (any fusion).
        nddr_kwargs: Dict of `NDDR` arguments (e.g. `alpha`, `beta`,
            `lr_multiplier`).
        cross_stitch_kwargs: Dict of `CrossStitch` arguments.
        shared_stages: For `fusion="shared"`, how many leading stages are
            shared, in `[1, len(stages)]`. Defaults to `len(stages) - 1`
            (at least 1).
        shortcut_channels: Integer or list of K integers, the shortcut
            output width per task. Defaults to each task's last stage width.
        shortcut_lr_multiplier: Learning-rate multiplier of the shortcut
            layers. Defaults to the NDDR `lr_multiplier` (or that of the
            cross-stitch units, else 1).
        task_names: List of K names, used as the output names (for
            per-output losses and metrics). Defaults to `task_0`, ...
        name: Optional model name; defaults to `"{fusion}_network"` (with
            `"_shortcut"` when `shortcut=True`).

    Returns:
        A functional `keras.Model` from one image input to a list of K
        outputs named `task_names`.

    Examples:
        >>> stages = [keras_dynfilt.models.conv_stage(8, name="s1"),
        ...           keras_dynfilt.models.conv_stage(16, name="s2")]
        >>> heads = [keras.Sequential([keras.layers.GlobalAveragePooling2D(),
        ...                            keras.layers.Dense(n)]) for n in (10, 4)]
        >>> model = keras_dynfilt.models.nddr_network(
        ...     (28, 28, 1), stages, heads,
        ...     nddr_kwargs={"lr_multiplier": 100.0})
        >>> [tuple(o.shape) for o in model.outputs]
        [(None, 10), (None, 4)]
    """
    if fusion not in FUSIONS:
        raise ValueError(
            f"`fusion` must be one of {FUSIONS}. Received: fusion={fusion!r}"
        )
    input_shape = check_image_shape(input_shape)
    check_bool(shortcut, "shortcut")
    check_name(name)
    for argument, value in (
        ("stages", stages), ("heads", heads), ("task_names", task_names)
    ):
        if value is None and argument == "task_names":
            continue
        if isinstance(value, (str, bytes, dict)) or not hasattr(
            value, "__iter__"
        ):
            raise TypeError(
                f"`{argument}` must be a list. Received: {argument}={value!r}"
            )
    for argument, value in (
        ("nddr_kwargs", nddr_kwargs),
        ("cross_stitch_kwargs", cross_stitch_kwargs),
    ):
        if value is not None and not isinstance(value, dict):
            raise TypeError(
                f"`{argument}` must be None or a dict of layer arguments. "
                f"Received: {argument}={value!r}"
            )
    for argument, value, layer_cls in (
        ("nddr_kwargs", nddr_kwargs, NDDR),
        ("cross_stitch_kwargs", cross_stitch_kwargs, CrossStitch),
    ):
        try:
            layer_cls(**(value or {}))
        except (ValueError, TypeError) as error:
            raise type(error)(
                f"`{argument}` are not valid {layer_cls.__name__} "
                f"arguments: {error}"
            ) from None
    if shortcut_lr_multiplier is not None:
        check_float(
            shortcut_lr_multiplier, "shortcut_lr_multiplier", 0.0,
            min_open=True,
        )
    stages = list(stages)
    if not stages or not all(callable(s) for s in stages):
        raise ValueError(
            "`stages` must be a non-empty sequence of stage factories "
            f"(callables). Received: stages={stages!r}"
        )
    heads = list(heads)
    if not heads or not all(callable(h) for h in heads):
        raise ValueError(
            "`heads` must be a non-empty sequence of callables, one per task. "
            f"Received: heads={heads!r}"
        )
    num_tasks = len(heads)
    if fusion in ("nddr", "cross_stitch", "shared") and num_tasks < 2:
        raise ValueError(
            f"fusion={fusion!r} needs at least 2 tasks (heads). "
            f"Received: {num_tasks} head(s)"
        )
    if task_names is None:
        task_names = [f"task_{k}" for k in range(num_tasks)]
    task_names = list(task_names)
    if len(task_names) != num_tasks or len(set(task_names)) != num_tasks:
        raise ValueError(
            f"`task_names` must be {num_tasks} distinct names (one per head). "
            f"Received: task_names={task_names!r}"
        )
    if fusion == "shared":
        if shared_stages is None:
            shared_stages = max(1, len(stages) - 1)
        _check_int(shared_stages, "shared_stages", 1)
        if shared_stages > len(stages):
            raise ValueError(
                "`shared_stages` must be at most the number of stages "
                f"({len(stages)}). Received: shared_stages={shared_stages}"
            )
    elif shared_stages is not None:
        raise ValueError(
            "`shared_stages` only applies to fusion='shared'. "
            f"Received: shared_stages={shared_stages!r}, fusion={fusion!r}"
        )
    nddr_kwargs = dict(nddr_kwargs or {})
    cross_stitch_kwargs = dict(cross_stitch_kwargs or {})
    if shortcut_lr_multiplier is None:
        shortcut_lr_multiplier = {
            "nddr": nddr_kwargs.get("lr_multiplier", 1.0),
            "cross_stitch": cross_stitch_kwargs.get("lr_multiplier", 1.0),
        }.get(fusion, 1.0)

    image = keras.Input(shape=tuple(input_shape), name="image")
    features = [image] * num_tasks
    stage_outputs = []  # per stage: list of K tensors after fusion
    for s, factory in enumerate(stages):
        if fusion == "shared" and s < shared_stages:
            layer = factory(None)
            if not callable(layer):
                raise ValueError(
                    f"Stage factory {s} returned {layer!r}, not a callable."
                )
            features = [layer(features[0])] * num_tasks
        else:
            layers = [factory(k) for k in range(num_tasks)]
            for k, layer in enumerate(layers):
                if not callable(layer):
                    raise ValueError(
                        f"Stage factory {s} returned {layer!r} for task {k}, "
                        "not a callable."
                    )
                for j in range(k):
                    if layer is layers[j]:
                        raise ValueError(
                            f"Stage factory {s} returned the same layer for "
                            f"tasks {j} and {k}; every task needs its own "
                            "weights: create the layer inside the factory."
                        )
            features = [layer(x) for layer, x in zip(layers, features)]
        if fusion == "nddr":
            features = NDDR(**{"name": f"nddr_{s + 1}", **nddr_kwargs})(
                features
            )
        elif fusion == "cross_stitch":
            features = CrossStitch(
                **{"name": f"cross_stitch_{s + 1}", **cross_stitch_kwargs}
            )(features)
        features = list(features)
        stage_outputs.append(features)

    if shortcut:
        features = _shortcuts(
            stage_outputs, shortcut_channels, shortcut_lr_multiplier,
            nddr_kwargs.get("batch_norm_momentum", 0.95), num_tasks,
        )

    outputs = [
        keras.layers.Identity(name=task)(head(x))
        for task, head, x in zip(task_names, heads, features)
    ]
    if name is None:
        name = f"{fusion}_network" + ("_shortcut" if shortcut else "")
    return keras.Model(image, outputs, name=name)


def _shortcuts(stage_outputs, channels, lr_multiplier, momentum, num_tasks):
    last = stage_outputs[-1]
    if channels is None:
        channels = [x.shape[-1] for x in last]
    elif isinstance(channels, int) and not isinstance(channels, bool):
        channels = [channels] * num_tasks
    channels = (
        list(channels) if isinstance(channels, (list, tuple)) else [channels]
    )
    if len(channels) != num_tasks or any(
        isinstance(c, bool) or not isinstance(c, int) or c < 1
        for c in channels
    ):
        raise ValueError(
            "`shortcut_channels` must be a positive integer or a list of "
            f"{num_tasks} of them. Received: shortcut_channels={channels!r}"
        )
    for outputs in stage_outputs:
        if len(outputs[0].shape) != 4:
            raise ValueError(
                "shortcut=True needs stages with 4-D outputs (batch, height, "
                f"width, channels). Received a stage output of shape "
                f"{tuple(outputs[0].shape)}"
            )
    height, width = last[0].shape[1], last[0].shape[2]
    fused = []
    for k in range(num_tasks):
        maps = []
        for s, outputs in enumerate(stage_outputs):
            x = outputs[k]
            if tuple(x.shape[1:3]) != (height, width):
                x = keras.layers.Resizing(
                    height, width, interpolation="bilinear",
                    name=f"shortcut_task{k}_resize_{s + 1}",
                )(x)
            maps.append(x)
        x = keras.layers.Concatenate(name=f"shortcut_task{k}_concat")(maps)
        conv = keras.layers.Conv2D(
            channels[k], 1, use_bias=False,
            kernel_regularizer=keras.regularizers.L2(DEFAULT_WEIGHT_DECAY / 2),
            name=f"shortcut_task{k}_conv",
        )
        norm = keras.layers.BatchNormalization(
            momentum=momentum, name=f"shortcut_task{k}_bn"
        )
        x = keras.layers.ReLU(name=f"shortcut_task{k}_relu")(norm(conv(x)))
        set_lr_multiplier([conv, norm], lr_multiplier)
        fused.append(x)
    return fused
