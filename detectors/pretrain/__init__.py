"""Self-supervised pretraining of the detectors' backbones on OK images (``defectgen pretrain``).

- :mod:`.backbones`: the torchvision trunks and the ``backbone.pt`` file every detector loads;
- :mod:`.views`: batched two-view augmentation, seeded per step;
- :mod:`.methods`: SimCLR, BYOL, SimSiam, MoCo v3 (heads and loss, one module each);
- :mod:`.defect_aware`: defectgen operators as hard negatives or as an auxiliary pretext head;
- :mod:`.trainer`: the run (checkpoints, resume, record); :mod:`.report`: its report; :mod:`.cli`: the command.

See docs/pretrain.md.
"""
