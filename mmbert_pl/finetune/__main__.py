"""python -m mmbert_pl.finetune"""
from mmbert_pl.finetune.cli import main

main()
