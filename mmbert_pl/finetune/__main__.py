"""python -m mmbert_pl.finetune"""
from data_prep.quick_exit import freeze_at_exit
from mmbert_pl.finetune.cli import main

freeze_at_exit()
main()
