"""ResNet-50 (v1.5) on ImageNet with the Flax ImageNet example's recipe: SGD Nesterov momentum 0.9,
lr 0.1 x batch / 256 (batch 1024: 0.4), 5 warmup epochs then cosine, weight decay 1e-4 on kernels,
100 epochs: 76.3-76.7% top-1 (8xV100: 13.2 h fp32, 4.3 h mixed precision; add
--config.precision=bfloat16 on TPU/GPU).

Prepare once (manual download of ILSVRC2012): tfds build imagenet2012 --file_format=array_record --manual_dir=DIR
"""
from configs import default


def get_config():
    c = default.get_config()
    c.data.name = "imagenet2012"
    c.data.manual_dir = "~/tensorflow_datasets/downloads/manual"   # ILSVRC2012_img_{train,val}.tar
    c.data.eval_split = "validation"
    c.data.augment = "imagenet"   # random-resized crop + flip; eval: resize 256, centre crop 224
    c.data.num_workers = 8
    c.eval_batch_size = 1000
    c.checkpoint.every_steps = 5000
    c.log_every_steps = 100

    c.model = "resnet50"
    c.batch_size = 1024
    c.num_epochs = 100.0
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.4
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 5.0
    return c
