"""`python -m rewardops_trainer` is `rewardops-trainer`."""

from rewardops_trainer.cli import main

main()
