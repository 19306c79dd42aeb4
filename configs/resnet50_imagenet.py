"""ResNet-50 (v1.5) on ImageNet with the Flax ImageNet example's recipe (examples/imagenet,
configs/tpu.py): SGD Nesterov momentum 0.9, lr 0.1 x batch / 256 (batch 1024: 0.4), 5 warmup epochs
then cosine, weight decay 1e-4 on kernels, 100 epochs, bicubic resizing (its input pipeline), each
residual block's last BatchNorm scale initialised to 0 (its models.py; torchvision's
``zero_init_residual``): 76.4-76.7% top-1 on TPUs at batch 1024 in half precision (add
--config.precision=bfloat16 on TPU/GPU; its 8xV100 runs: batch 512 fp32 76.7% in 13.2 h, batch 2048
mixed precision 76.3% in 4.3 h).
"""
from configs import default


def get_config():
    c = default.get_config()
    default.imagenet(c)
    default.sgd(c, 0.4, weight_decay=1e-4, nesterov=True)
    c.model = "resnet50"
    c.model_kwargs.zero_init_residual = True
    c.data.interpolation = "bicubic"
    c.batch_size = 1024
    c.num_epochs = 100.0
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 5.0
    return c
