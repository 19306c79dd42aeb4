"""ResNet-18 fine-tuned from torchvision's ImageNet weights on your own image folder.

Set the folder (placeholder below) on the command line; the weights come by name
(``transfer.init_from='pretrained:resnet18'``: torchvision's IMAGENET1K_V1, downloaded once into
``$ZOO_CACHE`` or ``~/.cache/cnn-zoo``, checked against its sha256, converted without PyTorch and
cached)::

    python -m train --config configs/resnet18_finetune_folder.py --workdir runs/flowers \\
        --config.data.name=folder:/data/flowers

``init_from`` may also name a tag (``pretrained:resnet18:IMAGENET1K_V1``), a weight file
(``.safetensors`` or ``.pth``) or a workdir of ours (fine-tune one of our own runs). Give the trained
weights back to torchvision with ``python -m train.transfer export runs/flowers
flowers_resnet18.safetensors`` (``torchvision.models.resnet18(num_classes=K).load_state_dict(
safetensors.torch.load_file(...))``), or export them (``python -m zoo.export --workdir runs/flowers
--format onnx --out flowers.onnx``).

The folder holds one subfolder per class (``PATH/<class>/*.jpg``; or ``PATH/train/<class>``,
``PATH/test/<class>``); without split folders 10% of each class is held out for evaluation.
Folder images are normalised with the ImageNet mean / std, as the torchvision weights expect.
The classifier ``fc``
is replaced (1000 -> the folder's class count, freshly initialised; logged).

The recipe (the notes' transfer-learning advice: the first layers compute generic edge / colour
features, later ones grow specific to the original classes; with a small dataset, fine-tuning
everything overfits, while a frozen network cannot adapt its higher features):

* ``freeze``: the stem and the first two stages (``conv1``, ``bn1``, ``layer1_*``, ``layer2_*``),
  their BatchNorm statistics included, stay exactly as pretrained;
* ``layer3``, ``layer4`` are fine-tuned at a tenth of the head's learning rate
  (``backbone_lr_mult = 0.1``) so that the pretrained features move slowly while the fresh ``fc``
  learns at the full rate.

For a very small or very ImageNet-like dataset use ``--config.transfer.freeze=backbone`` (a fixed
feature extractor: only ``fc`` trains); for a large, different one ``--config.transfer.freeze=none``.
"""
from configs import default


def get_config():
    c = default.get_config()
    c.model = "resnet18"
    c.data.name = "folder:/path/to/images"             # placeholder: one subfolder per class
    c.data.augment = "imagenet"   # random resized crop + flip; eval: resize + centre crop (224)
    c.transfer.init_from = "pretrained:resnet18"      # torchvision's ImageNet weights, by name
    c.transfer.freeze = r"^(conv1|bn1|layer1_\d+|layer2_\d+)/"
    c.transfer.backbone_lr_mult = 0.1

    c.batch_size = 64
    c.eval_batch_size = 128
    c.num_epochs = 15.0
    default.sgd(c, 0.01, weight_decay=1e-4)   # lr of the head; layer3/layer4 get 0.001
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 0.0
    c.log_every_steps = 10
    c.eval_every_epochs = 1.0
    c.checkpoint.every_steps = 500
    return c
