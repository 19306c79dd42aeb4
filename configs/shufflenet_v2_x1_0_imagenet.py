"""ShuffleNet V2 1.0x on ImageNet, Ma et al. 2018 (following ShuffleNet v1): SGD momentum 0.9, batch
1024, lr 0.5 decayed linearly to 0, weight decay 4e-5, 300k iterations (~240 epochs).
torchvision weights: 69.36% top-1.

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

    c.model = "shufflenet_v2_x1_0"
    c.batch_size = 1024
    c.num_train_steps = 300_000
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.5
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 4e-5
    c.schedule.name = "linear"
    return c
