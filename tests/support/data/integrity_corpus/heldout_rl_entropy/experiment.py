total_steps = 50000
num_workers = 8
clip = 0.2
ent_coef = 0.01
ent_coef_annealed = 0.02
