"""python -m mmbert_pl.evaluate"""
from data_prep.quick_exit import freeze_at_exit
from mmbert_pl.evaluate.cli import main

freeze_at_exit()
main()
