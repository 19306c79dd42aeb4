"""MobileNetV2 on ImageNet with torchvision's reference recipe (71.88% top-1): SGD momentum 0.9,
lr 0.045, weight decay 4e-5, batch 256, lr x0.98 every epoch, 300 epochs. The paper's own recipe
(RMSProp, decay 0.9, momentum 0.9) is --config.optimizer.name=rmsprop.

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

    c.model = "mobilenet_v2"
    c.batch_size = 256
    c.num_epochs = 300.0
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.045
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 4e-5
    c.schedule.name = "exponential"
    c.schedule.decay_rate = 0.98
    c.schedule.decay_epochs = 1.0
    return c
