"""VGG-16 (torchvision) on ImageNet with torchvision's reference recipe: SGD momentum 0.9, lr 0.01,
weight decay 1e-4, batch 256, lr x0.1 every 30 epochs, 90 epochs. torchvision weights: 71.59% top-1.

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

    c.model = "vgg16"
    c.batch_size = 256
    c.num_epochs = 90.0
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.01
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "step"
    c.schedule.step_epochs = 30.0
    c.schedule.decay_rate = 0.1
    return c
