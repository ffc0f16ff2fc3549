"""`ImageData`: what `load_image_data` returns, on every backend."""

import dataclasses


@dataclasses.dataclass
class ImageData:
    """Train and test pipelines of an image-classification dataset.

    Attributes:
        train: The training split, shuffled, batched by the global batch
            size: a prefetched `tf.data.Dataset` on the TensorFlow backend,
            an `ArrayBatches` (`keras.utils.PyDataset`) on the others.
        test: The test split, batched (same types).
        num_classes: Number of classes.
        input_shape: `(height, width, channels)` of one image.
        num_train: Number of training examples.
        num_test: Number of test examples.
        class_names: Class names, if the dataset has them.
        source: Where the data came from (`"tfds"`, `"local:<dir>"`,
            `"sklearn"`).
        name: The dataset name.
    """

    train: object
    test: object
    num_classes: int
    input_shape: tuple
    num_train: int
    num_test: int
    class_names: list
    source: str
    name: str
