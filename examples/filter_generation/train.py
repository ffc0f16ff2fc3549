"""Learning to generate filters (Shen & Liu): Tables 1-2 on Fashion-MNIST.

Trains the paper's MNIST network (appendix A.1.1) either as the static
baseline (table 4) or with sample-specific filters: an autoencoder of width
`n_ae`, a dimension-reduction module per encoder layer and `FilterGenerator`
convolutions with repositories of `s` base filters, trained with
`L = BCE(reconstruction) + CE(logits)`. Records the test accuracy after the
first and the last epoch and, with filter generation, the sample-specificity
check of section 4.4.2 (each test image classified with the filters
generated from another test image).

    python examples/filter_generation/train.py --model baseline
    python examples/filter_generation/train.py --model generated \\
        --encoder-filters 20 --repository-size 5 --seed 0 \\
        --output-dir runs/filter_generation/nae20_s5/seed0

`examples/filter_generation/reproduce.py` runs the whole grid of the tables.
"""

import keras
import numpy as np

from keras_dynfilt import training
from keras_dynfilt.models import filter_generation_network, sample_specificity


def _accuracy_key(history, prefix="val_"):
    keys = [
        k for k in history if k.startswith(prefix) and k.endswith("accuracy")
    ]
    if len(keys) != 1:
        raise ValueError(f"expected one {prefix}*accuracy metric: {keys}")
    return keys[0]


def _test_arrays(dataset):
    images, labels = [], []
    for image, label in dataset:
        if isinstance(label, dict):
            label = label["logits"]
        images.append(np.asarray(image))
        labels.append(np.asarray(label))
    return np.concatenate(images), np.concatenate(labels)


def main(argv=None):
    parser = training.example_argument_parser(
        __doc__.splitlines()[0],
        dataset="fashion_mnist",
        epochs=20,
        batch_size=128,
        output_dir="runs/filter_generation",
    )
    parser.add_argument(
        "--model", choices=("generated", "baseline"), default="generated"
    )
    parser.add_argument(
        "--encoder-filters", type=int, default=20, help="n_ae"
    )
    parser.add_argument(
        "--repository-size", type=int, default=5, help="s"
    )
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--specificity-samples",
        type=int,
        default=10000,
        help="test images used for the swapped-filter check",
    )
    args = parser.parse_args(argv)

    run = training.ExperimentRun.from_args(args)
    generated = args.model == "generated"

    def with_reconstruction_target(image, label):
        return image, {"reconstruction": image, "logits": label}

    data = run.load_data(map_fn=with_reconstruction_target if generated
                         else None)
    print(
        f"dataset {data.name} ({data.source}): {data.num_train} train / "
        f"{data.num_test} test; model {args.model}"
        + (f" n_ae={args.encoder_filters} s={args.repository_size}"
           if generated else "")
    )
    classification = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True
    )
    with run.strategy.scope():
        model = filter_generation_network(
            data.input_shape,
            data.num_classes,
            encoder_filters=args.encoder_filters,
            repository_size=args.repository_size,
            filter_generation=generated,
        )
        if generated:
            loss = {
                "reconstruction": keras.losses.BinaryCrossentropy(),
                "logits": classification,
            }
            metrics = {"logits": ["accuracy"]}
        else:
            loss, metrics = classification, ["accuracy"]
        run.compile(
            model,
            optimizer=keras.optimizers.Adam(args.learning_rate),
            loss=loss,
            metrics=metrics,
        )
    history = model.fit(
        data.train,
        shuffle=False,  # the pipeline shuffles; Keras would warn
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        validation_data=data.test,
        callbacks=run.callbacks(),
        verbose=args.verbose,
    )
    metrics = model.evaluate(data.test, return_dict=True, verbose=0)
    val_key = _accuracy_key(history.history)
    extra = {
        "model": args.model,
        "params": model.count_params(),
        "accuracy_epoch_1": history.history[val_key][0],
        "accuracy_final": metrics[_accuracy_key(metrics, prefix="")],
    }
    if generated:
        images, labels = _test_arrays(data.test)
        n = min(args.specificity_samples, len(images))
        extra["sample_specificity"] = sample_specificity(
            model, images[:n], labels[:n], seed=args.seed
        )
    results = run.finish(history, metrics, extra=extra)
    print(
        f"test accuracy after epoch 1: {extra['accuracy_epoch_1']:.4f}, "
        f"after {args.epochs}: {extra['accuracy_final']:.4f}"
        + (
            f", with swapped filters: "
            f"{extra['sample_specificity']['swapped_accuracy']:.4f}"
            if generated
            else ""
        )
        + f" ({results['wall_seconds']:.0f}s) -> {args.output_dir}"
    )
    return results


if __name__ == "__main__":
    main()
