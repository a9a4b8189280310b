"""Use defectgen inside a training loop: the CutPaste 3-way pretext as cross-entropy targets.

    python examples/training_loop.py --steps 20

Defects are made on the batch's own device, from an explicit generator, so the run repeats exactly.
"""
import argparse

import torch
import torchvision

from defectgen import cutpaste_3way
from defectgen.io import default_images


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    ok_images = default_images(size=args.size, count=8).to(device)  # uint8 (8, 3, H, W)
    pretext = cutpaste_3way()
    model = torchvision.models.resnet18(num_classes=3).to(device)  # random init: nothing is downloaded
    optimiser = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9)
    generator = torch.Generator().manual_seed(0)

    for step in range(args.steps):
        index = torch.randint(0, len(ok_images), (args.batch,), generator=generator)
        batch = pretext(ok_images[index.to(device)], generator=generator)
        logits = model(batch.image.float() / 255)
        loss = torch.nn.functional.cross_entropy(logits, batch.label)  # 0 normal, 1 cutpaste, 2 scar
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        accuracy = (logits.argmax(1) == batch.label).float().mean()
        print(f"step {step:3d}  loss {loss.item():.3f}  accuracy {accuracy.item():.2f}")
    return loss.item()


if __name__ == "__main__":
    main()
