"""Writes the planted-flaw corpus of the integrity check (run once; the files are kept).

Each paper folder is laid out like an idea folder or a reference results folder:
run_<i>/final_info.json (+ run_env.json when recorded), experiment.py, notes.txt,
latex/template.tex, figures, and manifest.json: every planted flaw as {quote, class}
(the quote is unique in the paper and on the flaw's line). Papers with "held_out": true
are evaluated only at the end (the benchmark prints them separately).

    python tests/support/data/integrity_corpus/make_corpus.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

HERE = Path(__file__).parent
CPU_ENV = {"python": "3.11.9", "torch": "2.3.1+cpu", "cuda": None, "cudnn": None, "gpus": [],
           "cpu_model": "AMD EPYC 7B13", "cpu_count": 8, "platform": "Linux", "numpy": "1.26.4"}
A100_ENV = {"python": "3.10.12", "torch": "2.1.2", "cuda": "12.1", "cudnn": "8902",
            "gpus": ["NVIDIA A100-SXM4-40GB"], "cpu_model": "Intel Xeon Gold 6338",
            "cpu_count": 32, "platform": "Linux", "numpy": "1.24.4"}
RTX_ENV = {"python": "3.12.2", "torch": "2.4.0", "cuda": "12.4", "gpus": [
    "NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"], "cpu_model": "AMD Ryzen 9 7950X",
    "cpu_count": 32, "platform": "Linux"}


def pct(new: float, old: float) -> float:
    return abs(new - old) / abs(old) * 100


def write_paper(name: str, *, runs: dict[int, dict[str, dict[str, float]]], body: str,
                flaws: list[tuple[str, str]], env: dict | None, code: str, notes: str,
                figures: tuple[str, ...] = (), held_out: bool = False, sakana: bool = False,
                template_toml: str = "", seeds: int = 3) -> None:
    d = HERE / name
    if d.exists():
        shutil.rmtree(d)
    (d / "latex").mkdir(parents=True)
    for i, per_ds in runs.items():
        rd = d / f"run_{i}"
        rd.mkdir()
        info = {}
        for ds, means in per_ds.items():
            if sakana:
                info[ds] = {"means": {f"{k}_mean": v for k, v in means.items()},
                            "stderrs": {f"{k}_stderr": round(abs(v) * 0.013, 4)
                                        for k, v in means.items()}}
            else:
                info[ds] = {"means": means,
                            "stderrs": {k: round(abs(v) * 0.013, 4) for k, v in means.items()},
                            "final_info_dict": {k: [v * (1 + 0.01 * (j - seeds // 2))
                                                    for j in range(seeds)]
                                                for k, v in means.items()}}
        (rd / "final_info.json").write_text(json.dumps(info, indent=2))
        if env is not None:
            (rd / "run_env.json").write_text(json.dumps(env, indent=2))
    (d / "experiment.py").write_text(code)
    (d / "notes.txt").write_text(notes)
    if template_toml:
        (d / "template.toml").write_text(template_toml)
    for f in figures:
        (d / f).write_bytes(b"\x89PNG\r\n\x1a\n")
    tex = ("\\documentclass{article}\n\\usepackage{graphicx}\n\\graphicspath{{../}}\n"
           "\\begin{document}\n" + body.strip("\n") + "\n\\bibliographystyle{plain}\n"
           "\\bibliography{references}\n\\end{document}\n")
    (d / "latex" / "template.tex").write_text(tex)
    for quote, _ in flaws:
        assert tex.count(quote) == 1, (name, quote, tex.count(quote))
    (d / "manifest.json").write_text(json.dumps(
        {"held_out": held_out, "flaws": [{"quote": q, "class": c} for q, c in flaws]},
        indent=2))


def main() -> None:
    for fn in PAPERS:
        fn()


PAPERS: list = []


def paper(fn):  # type: ignore[no-untyped-def]
    PAPERS.append(fn)
    return fn



GROK_CODE = """import argparse
p = 97
num_steps = 7500
batch_size = 512
lr = 1e-3
weight_decay = 0.5
warmup_steps = 50
d_model = 128
num_heads = 4
num_layers = 2
threshold = 0.99
seeds = [0, 1, 2]
train_fraction = 0.5
"""


@paper
def grok_schedule() -> None:
    def m(tl, vl, ta, va, st):
        return {"final_train_loss": tl, "final_val_loss": vl, "final_train_acc": ta,
                "final_val_acc": va, "step_val_acc_99": st}
    runs = {
        0: {"x_plus_y": m(0.0052, 0.0131, 1.0, 0.9987, 4120),
            "x_div_y": m(0.0061, 0.0215, 1.0, 0.9962, 5230)},
        1: {"x_plus_y": m(0.0049, 0.0104, 1.0, 0.9991, 3510),
            "x_div_y": m(0.0058, 0.0199, 1.0, 0.9969, 4870)},
        2: {"x_plus_y": m(0.0047, 0.0098, 1.0, 0.9993, 3380),
            "x_div_y": m(0.0055, 0.0183, 1.0, 0.9975, 4410)},
        3: {"x_plus_y": m(0.0045, 0.0091, 1.0, 0.9995, 2950),
            "x_div_y": m(0.0053, 0.0176, 1.0, 0.9978, 5410)},
    }
    body = r"""
\section{Experimental Setup}
We train a 2-layer Transformer with width 128 on all 9409 pairs of residues modulo 97,
half of which form the training split.
Training runs for 7500 steps with batch size 512 and a learning rate of $10^{-3}$; the
decayed phase uses half of it, $5 \times 10^{-4}$.
All runs were trained on a single NVIDIA V100 GPU.
The code is implemented in PyTorch 1.13.
\section{Results}
On x\_plus\_y the baseline reaches 99\% validation accuracy after 4120 steps, while our
schedule needs 2950 steps, 28.4\% fewer.
Our method reaches 99\% validation accuracy after 3380 steps on x\_plus\_y in the final configuration.
The steps to 99\% validation accuracy on x\_plus\_y are reduced by 35\% overall.
On x\_div\_y the final validation loss improves from 0.0176 to 0.0183 with the schedule.
Warm-up is better, needing 4870 steps compared to 4410 steps for the plain schedule.
The schedule consistently reduces the steps to grokking on all datasets.
In short, the schedule improves by 28.4% on x\_plus\_y, the largest gain we saw.
Run 3 improves the final validation accuracy to 99.95\% on x\_plus\_y.
The validation loss on x\_plus\_y is 0.0091 $\pm$ 0.0024 for the final schedule.
The final validation accuracy on x\_div\_y is 99.78\%, against 99.62\% for the baseline.
\begin{figure}[t]
\includegraphics[width=0.45\textwidth]{val_acc_x_plus_y.png}
\includegraphics[width=0.45\textwidth]{val_acc_x_div_y.png}
\caption{Validation accuracy during training.}
\label{fig:acc}
\end{figure}
"""
    flaws = [
        ("a single NVIDIA V100 GPU", "environment"),
        ("PyTorch 1.13", "environment"),
        ("after 3380 steps", "wrong_run"),
        ("reduced by 35", "invented_number"),
        ("improves from 0.0176 to 0.0183", "direction"),
        ("needing 4870 steps compared to 4410", "direction"),
        ("consistently reduces", "overclaim"),
        ("improves by 28.4% on", "hidden_text"),
        ("Run 3 improves", "jargon"),
        ("$\\pm$ 0.0024", "invented_number"),
        ("val_acc_x_div_y.png", "missing_figure"),
    ]
    write_paper("grok_schedule", runs=runs, body=body, flaws=flaws, env=CPU_ENV,
                code=GROK_CODE, figures=("val_acc_x_plus_y.png",),
                notes="Run 1: warm-up only. Run 2: plain schedule. Run 3: warm-up plus "
                      "schedule; run 3 is the final method.\n")

DIFF_CODE = """num_timesteps = 100
beta_start = 0.0001
beta_end = 0.02
train_batch_size = 256
eval_batch_size = 10000
num_train_steps = 10000
learning_rate = 3e-4
hidden_size = 256
hidden_layers = 3
embedding_dim = 128
"""
DIFF_TOML = """[metrics]
lower_is_better = ["eval_loss", "kl_divergence", "training_time", "inference_time"]
"""


@paper
def diffusion_noise() -> None:
    def m(el, kl, tt, it):
        return {"eval_loss": el, "kl_divergence": kl, "training_time": tt, "inference_time": it}
    runs = {
        0: {"circle": m(0.436, 0.354, 38.2, 0.172), "dino": m(0.665, 1.018, 37.9, 0.169),
            "line": m(0.801, 0.157, 38.5, 0.171), "moons": m(0.615, 0.091, 38.1, 0.170)},
        1: {"circle": m(0.431, 0.312, 41.0, 0.175), "dino": m(0.659, 0.874, 40.6, 0.174),
            "line": m(0.804, 0.149, 41.3, 0.176), "moons": m(0.611, 0.102, 40.8, 0.173)},
        2: {"circle": m(0.428, 0.297, 42.7, 0.177), "dino": m(0.652, 0.811, 42.2, 0.176),
            "line": m(0.799, 0.163, 42.9, 0.178), "moons": m(0.608, 0.084, 42.5, 0.176)},
    }
    body = r"""
\section{Experimental Setup}
We train a denoising MLP with 3 hidden layers of width 256 for 10000 steps with batch size
256 and learning rate $3 \times 10^{-4}$, using 100 diffusion timesteps and a linear
schedule from $\beta = 0.0001$ to $0.02$. Samples for evaluation are 10000 points.
Training took about 40 seconds per dataset on 8 NVIDIA A100 GPUs with CUDA 11.8.
\section{Results}
Table~\ref{tab:main} lists the evaluation loss and KL divergence of every dataset.
\begin{table}[t]
\centering
\begin{tabular}{lcccc}
\toprule
Method & circle KL & dino KL & line KL & moons KL \\
\midrule
Baseline & 0.354 & 1.018 & 0.157 & 0.091 \\
Adaptive noise (ours) & 0.297 & 0.811 & 0.149 & 0.084 \\
\bottomrule
\end{tabular}
\caption{KL divergence between generated and real samples (lower is better).}
\label{tab:main}
\end{table}
On dino the KL divergence drops from 1.018 to 0.811, a 20.3\% reduction.
On circle our adaptive schedule lowers the KL divergence by 16.1\%.
The adaptive schedule outperforms the baseline on moons with a KL divergence of 0.102 compared to the baseline's 0.091.
Our method reaches an evaluation loss of 0.431 on circle.
On line the evaluation loss of 0.799 is 0.2\% lower than the baseline's 0.801.
The adaptive noise schedule consistently improves the KL divergence on every dataset.
Training time grows from 38.2 to 42.7 seconds on circle, an 11.8\% increase.
The inference time improves from 0.170 to 0.176 seconds on moons.
Across datasets, the evaluation loss decreases by 2.5\% on average.
We observe a 41.7\% lower KL divergence on dino with the adaptive schedule.
\begin{figure}[t]
\includegraphics[width=0.9\textwidth]{generated_images.png}
\caption{Generated samples.}
\label{fig:samples}
\end{figure}
Figure~\ref{fig:kl_curves} shows the KL divergence during training.
"""
    flaws = [
        ("8 NVIDIA A100 GPUs", "environment"),
        ("CUDA 11.8", "environment"),
        ("Adaptive noise (ours) & 0.297 & 0.811 & 0.149 & 0.084", "wrong_run"),
        ("a KL divergence of 0.102 compared to the baseline's 0.091", "direction"),
        ("evaluation loss of 0.431 on circle", "wrong_run"),
        ("consistently improves the KL divergence", "overclaim"),
        ("improves from 0.170 to 0.176", "direction"),
        ("decreases by 2.5", "invented_number"),
        ("41.7", "invented_number"),
        ("fig:kl_curves", "missing_figure"),
    ]
    write_paper("diffusion_noise", runs=runs, body=body, flaws=flaws, env=A100_ENV,
                code=DIFF_CODE, figures=("generated_images.png",), template_toml=DIFF_TOML,
                notes="Run 1: cosine noise. Run 2: adaptive noise schedule, the final "
                      "method is run 2.\n")


NANO_CODE = """batch_size = 64
block_size = 256
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
learning_rate = 1e-3
max_iters = 5000
warmup_iters = 100
min_lr = 1e-4
beta2 = 0.99
eval_interval = 250
"""


@paper
def nanogpt_norm() -> None:
    # A results folder of the reference system: _mean/_stderr names, no run_env.json.
    def m(tl, vl, tt, tps):
        return {"final_train_loss": tl, "best_val_loss": vl, "total_train_time": tt,
                "avg_inference_tokens_per_second": tps}
    runs = {
        0: {"shakespeare_char": m(0.8109, 1.4651, 212.4, 662.3),
            "enwik8": m(0.9352, 1.0049, 1920.7, 671.0),
            "text8": m(1.0012, 0.9797, 1889.2, 668.4)},
        1: {"shakespeare_char": m(0.8240, 1.4661, 230.5, 640.8),
            "enwik8": m(0.9410, 1.0102, 2051.3, 650.2),
            "text8": m(1.0087, 0.9841, 2013.9, 648.1)},
        2: {"shakespeare_char": m(0.7987, 1.4556, 221.0, 655.9),
            "enwik8": m(0.9301, 0.9998, 1987.5, 660.7),
            "text8": m(0.9950, 0.9769, 1954.0, 659.3)},
    }
    body = r"""
\section{Experimental Setup}
Our character-level models have 6 layers, 6 heads and an embedding size of 384, trained
for 5000 iterations with batch size 64, context length 256 and dropout 0.2. The learning
rate warms up over 100 iterations to $10^{-3}$ and decays to $10^{-4}$.
All experiments were run with Python 3.11.
Each model was trained on two RTX 3090 GPUs.
\section{Results}
With the norm scaling, the best validation loss on shakespeare\_char is 1.4556 compared to
1.4651 for the baseline, a 0.6\% improvement.
The first variant outperforms the baseline on shakespeare\_char: 1.4661 compared to the baseline's 1.4651.
On enwik8 our final model reaches a best validation loss of 1.0102.
On text8 the best validation loss improves from 0.9797 to 0.9769.
Training takes 221.0 seconds on shakespeare\_char, 4.0\% longer than the baseline.
Inference throughput drops from 662.3 to 655.9 tokens per second, a 1.0\% slowdown.
Our method consistently achieves a lower training time than all other variants on every dataset.
The final training loss on text8 improves by 3.3\% over the baseline.
\begin{table}[t]
\centering
\begin{tabular}{lccc}
\toprule
Method & Train loss & Val loss & Time (s) \\
\midrule
Baseline & 0.8109 & 1.4651 & 212.4 \\
Norm scaling & 0.7987 & 1.4661 & 221.0 \\
\bottomrule
\end{tabular}
\caption{Results on shakespeare\_char.}
\end{table}
Inference throughput improves by 1.5\% on enwik8 with the norm scaling.
"""
    flaws = [
        ("Python 3.11", "environment"),
        ("two RTX 3090 GPUs", "environment"),
        ("1.4661 compared to the baseline's 1.4651", "direction"),
        ("best validation loss of 1.0102", "wrong_run"),
        ("Norm scaling & 0.7987 & 1.4661 & 221.0", "mixed_row"),
        ("improves by 3.3", "invented_number"),
        ("consistently achieves", "overclaim"),
        ("improves by 1.5", "direction"),
    ]
    write_paper("nanogpt_norm", runs=runs, body=body, flaws=flaws, env=None,
                code=NANO_CODE, sakana=True,
                notes="Run 1: pre-norm scaling. Run 2: learned norm scaling (final).\n"
                      "The final method is run 2.\n")


CLS_CODE = """epochs = 20
batch_size = 128
lr = 0.01
momentum = 0.9
weight_decay = 5e-4
label_smoothing = 0.1
num_classes = 10
"""


@paper
def classifier_smoothing() -> None:
    def m(acc, f1, t):
        return {"test_accuracy": acc, "macro_f1": f1, "train_time_s": t}
    runs = {
        0: {"mnist": m(0.9912, 0.9910, 95.3), "cifar10": m(0.8731, 0.8702, 412.8)},
        1: {"mnist": m(0.9918, 0.9915, 96.1), "cifar10": m(0.8806, 0.8779, 415.2)},
        2: {"mnist": m(0.9909, 0.9906, 97.4), "cifar10": m(0.8862, 0.8840, 418.9)},
        3: {"mnist": m(0.9921, 0.9919, 96.8), "cifar10": m(0.8895, 0.8871, 417.5)},
    }
    body = r"""
\section{Setup}
We train for 20 epochs with batch size 128, SGD with momentum 0.9, learning rate 0.01
(halved to 0.005 after 10 epochs) and weight decay $5 \times 10^{-4}$.
Our experiments used an Intel Xeon CPU with 8 cores and NumPy 1.26.
\section{Results}
Label smoothing raises the test accuracy on cifar10 from 87.31\% to 88.95\%, an absolute
gain of 1.64 percentage points.
Our method attains a test accuracy of 88.62\% on cifar10.
On mnist the accuracy improves from 99.21\% to 99.09\% with the smoothing.
The smoothed model always trains in less time than the baseline on every dataset.
Compared to the baseline, macro F1 on cifar10 is 0.8871 versus 0.8702.
The macro F1 on mnist rises by 0.45\% to 0.9919.
Training on cifar10 takes 417.5 seconds compared to 412.8 seconds, 1.1\% slower.
The proposed method reaches 92.4\% test accuracy on cifar10.
The baseline trains for 95.3 seconds on mnist, and the final model for 96.8 seconds.
\begin{table}[t]
\begin{tabular}{lcc}
Method & mnist accuracy (\%) & cifar10 accuracy (\%) \\
Baseline & 99.12 & 87.31 \\
Smoothing (final) & 99.21 & 88.06 \\
\end{tabular}
\caption{Test accuracy.}
\end{table}
The test accuracy of the final model on mnist is 99.21 $\pm$ 0.13 percent.
The intermediate variant improves the test accuracy by 0.9\% on mnist.
"""
    flaws = [
        ("Intel Xeon CPU with 8 cores", "environment"),
        ("test accuracy of 88.62", "wrong_run"),
        ("improves from 99.21\\% to 99.09", "direction"),
        ("always trains in less time", "overclaim"),
        ("NumPy 1.26", "environment"),
        ("rises by 0.45", "invented_number"),
        ("92.4", "invented_number"),
        ("Smoothing (final) & 99.21 & 88.06", "mixed_row"),
        ("$\\pm$ 0.13", "invented_number"),
        ("by 0.9\\% on mnist", "invented_number"),
    ]
    write_paper("classifier_smoothing", runs=runs, body=body, flaws=flaws, env=A100_ENV,
                code=CLS_CODE, notes="Run 3 is the final configuration.\n")



@paper
def clean_grok_wd() -> None:
    """A control: every number is right (values, changes, setup constants)."""
    def m(vl, va, st):
        return {"final_val_loss": vl, "final_val_acc": va, "step_val_acc_99": st}
    runs = {
        0: {"x_plus_y": m(0.0131, 0.9987, 4120), "x_minus_y": m(0.0148, 0.9981, 4460),
            "permutation": m(1.8420, 0.4630, 7500)},
        1: {"x_plus_y": m(0.0112, 0.9990, 3770), "x_minus_y": m(0.0139, 0.9984, 4010),
            "permutation": m(1.7110, 0.5120, 7500)},
    }
    body = r"""
\section{Experimental Setup}
Each of the 9409 input pairs modulo 97 is used once; training runs 7500 steps with a batch
size of 512, a learning rate of $10^{-3}$ and weight decay 0.5, later halved to 0.25.
The Transformer has 2 layers, 4 heads and width 128; every result is a mean over 3 seeds.
All runs used a CPU with 8 cores (AMD EPYC) and PyTorch 2.3.
\section{Results}
On x\_plus\_y, stronger weight decay reduces the steps to 99\% validation accuracy from
4120 to 3770, an 8.5\% reduction, and on x\_minus\_y from 4460 to 4010 steps (10.1\%).
The validation loss on x\_plus\_y falls from 0.0131 to 0.0112, 14.5\% lower than the baseline.
On the permutation task neither model reaches 99\% validation accuracy within 7500 steps,
but the validation accuracy improves from 46.3\% to 51.2\%, a gain of 4.9 percentage points.
The validation loss on permutation is 1.711 compared to 1.842 for the baseline.
Our final model reaches a validation accuracy of 99.90\% on x\_plus\_y and 99.84\% on x\_minus\_y.
Stronger weight decay consistently lowers the validation loss on every dataset.
\begin{table}[t]
\centering
\begin{tabular}{lccc}
\toprule
Method & Val. loss & Val. acc. (\%) & Steps to 99\% \\
\midrule
Baseline & 0.0131 $\pm$ 0.0002 & 99.87 & 4120 \\
Weight decay 1.0 & 0.0112 $\pm$ 0.0001 & 99.90 & 3770 \\
\bottomrule
\end{tabular}
\caption{Results on x\_plus\_y (mean $\pm$ standard error over 3 seeds).}
\end{table}
\begin{figure}[t]
\includegraphics[width=0.45\textwidth]{val_loss_x_plus_y.png}
\caption{Validation loss on x\_plus\_y.}
\label{fig:loss}
\end{figure}
Figure~\ref{fig:loss} shows the validation loss during training.
"""
    write_paper("clean_grok_wd", runs=runs, body=body, flaws=[], env=CPU_ENV,
                code=GROK_CODE.replace("weight_decay = 0.5", "weight_decay = 0.5\nwd_strong = 1.0"),
                figures=("val_loss_x_plus_y.png",),
                notes="Run 1: weight decay 1.0 (final).\n")


@paper
def heldout_rl_entropy() -> None:
    """Held out: written before the final evaluation, never used to tune the check."""
    def m(r, s, t):
        return {"mean_reward": r, "steps_to_solve": s, "wall_time": t}
    runs = {
        0: {"cartpole": m(412.5, 18200, 310.4), "acrobot": m(-98.3, 41500, 522.0)},
        1: {"cartpole": m(455.1, 15100, 318.9), "acrobot": m(-91.7, 39800, 530.6)},
        2: {"cartpole": m(471.8, 14300, 321.2), "acrobot": m(-104.2, 43900, 529.9)},
    }
    body = r"""
\section{Setup}
We train PPO for 50000 steps per environment with 8 parallel workers, a clip range of 0.2
and an entropy coefficient of 0.01, raised to 0.02 for the annealed variant.
Training used one NVIDIA H100 GPU with PyTorch 2.1 and CUDA 12.1.
\section{Results}
On cartpole the mean reward rises from 412.5 to 471.8, a 14.4\% improvement.
Our annealed method reaches a mean reward of 455.1 on cartpole.
On acrobot the annealed entropy improves the mean reward from -98.3 to -104.2.
The annealed entropy consistently improves the mean reward on all environments and tasks.
Steps to solve cartpole drop from 18200 to 14300, 21.4\% fewer.
The method solves acrobot in 39800 steps, 12.7\% faster than the baseline.
Wall time increases from 310.4 to 321.2 seconds on cartpole.
The annealed variant is slower, needing 14300 steps versus 15100 steps.
Figure~\ref{fig:reward_curves} shows the reward over training.
As Run 2 shows, annealing matters more than the coefficient itself.
"""
    flaws = [
        ("one NVIDIA H100 GPU", "environment"),
        ("mean reward of 455.1", "wrong_run"),
        ("from -98.3 to -104.2", "direction"),
        ("consistently improves the mean reward", "overclaim"),
        ("12.7", "invented_number"),
        ("is slower, needing 14300 steps versus 15100", "direction"),
        ("fig:reward_curves", "missing_figure"),
        ("As Run 2 shows", "jargon"),
    ]
    write_paper("heldout_rl_entropy", runs=runs, body=body, flaws=flaws, env=A100_ENV,
                code="total_steps = 50000\nnum_workers = 8\nclip = 0.2\nent_coef = 0.01\n"
                     "ent_coef_annealed = 0.02\n",
                notes="Run 1: annealed entropy. Run 2: annealed plus clipping. "
                      "The final method is run 2.\n", held_out=True)

RL_CODE = """total_episodes = 3000
gamma = 0.99
batch_size = 64
lr = 3e-4
bonus_scale = 0.1
seeds = [0, 1, 2]
"""


@paper
def rl_reward_shaping() -> None:
    """Negative rewards, no recorded environment, booktabs tables with bold."""
    def m(r, e, t):
        return {"mean_return": r, "episodes_to_threshold": e, "wall_clock_s": t}
    runs = {
        0: {"pendulum": m(-412.7, 1850, 612.4), "mountaincar": m(-148.2, 2400, 455.0)},
        1: {"pendulum": m(-365.1, 1620, 640.9), "mountaincar": m(-139.6, 2210, 470.3)},
        2: {"pendulum": m(-301.4, 1410, 655.2), "mountaincar": m(-121.9, 1980, 482.7)},
        3: {"pendulum": m(-338.8, 1530, 648.0), "mountaincar": m(-131.5, 2050, 479.1)},
    }
    body = r"""
\section{Experimental Setup}
We train SAC agents for 3,000 episodes with a discount of 0.99, batch size 64 and a
learning rate of $3\times10^{-4}$; the shaping bonus is scaled by 0.1.
All results average over five random seeds.
Experiments ran on two NVIDIA RTX 3090 GPUs.
We used PyTorch 2.0.1 throughout.
\section{Results}
On pendulum, shaping raises the mean return from $-412.7$ to $-301.4$, a 27.0\% improvement.
On mountaincar, the return improves from -121.9 to -139.6 over the plain bonus.
Our final agent reaches a mean return of $-338.8$ on pendulum.
Episodes to threshold on pendulum drop from 1,850 to 1,410, 23.8\% fewer.
Shaping cuts the episodes to threshold on mountaincar by 31.5\%.
The wall-clock time grows from 612.4 s to 655.2 s on pendulum, 7.0\% slower.
The shaped agent is faster, needing 482.7 seconds against 455.0 seconds for the baseline on mountaincar.
An ablation without the bonus (Table~\ref{tab:pend}) recovers only part of the gain.
A sweep over the bonus scale shows that 0.1 is optimal.
Shaping consistently improves the mean return on every environment.
Across all environments, shaping outperforms all other variants in wall-clock time.
The configuration in run\_2 is the one we recommend.
On average the bonus adds 7% overhead per update, which is negligible.
\begin{table}[t]
\centering
\caption{Mean return ($\uparrow$) and episodes to threshold ($\downarrow$) on pendulum; best in bold.}
\label{tab:pend}
\begin{tabular}{lcc}
\toprule
Method & Return $\uparrow$ & Episodes $\downarrow$ \\
\midrule
Baseline & $-412.7$ & 1850 \\
Plain bonus & $-365.1$ & 1620 \\
No bonus (ablation) & $-338.8$ & 1530 \\
Shaped (ours) & $\mathbf{-301.4}$ & \textbf{1530} \\
\bottomrule
\end{tabular}
\end{table}
\begin{table}[t]
\centering
\caption{Mountaincar: mean return and wall-clock seconds.}
\begin{tabular}{lcc}
\toprule
Method & Return & Wall-clock (s) $\downarrow$ \\
\midrule
Baseline & $-148.2$ & 455.0 \\
Shaped (ours) & $\mathbf{-121.9}$ & \textbf{482.7} \\
\bottomrule
\end{tabular}
\end{table}
\begin{figure}[t]
\includegraphics[width=0.48\textwidth]{episodes.png}
\includegraphics[width=0.48\textwidth]{return_curves.png}
\caption{Episodes to threshold and return curves.}
\label{fig:curves}
\end{figure}
"""
    flaws = [
        ("five random seeds", "invented_number"),
        ("two NVIDIA RTX 3090 GPUs", "environment"),
        ("PyTorch 2.0.1", "environment"),
        ("improves from -121.9 to -139.6", "direction"),
        ("mean return of $-338.8$", "wrong_run"),
        ("by 31.5", "invented_number"),
        ("is faster, needing 482.7 seconds against 455.0", "direction"),
        ("A sweep over the bonus scale", "analysis"),
        ("outperforms all other variants in wall-clock time", "overclaim"),
        ("run\\_2 is the one", "jargon"),
        ("adds 7% overhead", "hidden_text"),
        ("Shaped (ours) & $\\mathbf{-301.4}$ & \\textbf{1530}", "mixed_row"),
        ("\\textbf{482.7}", "direction"),
        ("return_curves.png", "missing_figure"),
    ]
    write_paper("rl_reward_shaping", runs=runs, body=body, flaws=flaws, env=None,
                code=RL_CODE, figures=("episodes.png",),
                notes="Run 1: plain bonus. Run 2: shaped bonus; run 2 is the final method.\n"
                      "Run 3: ablation of run 2 without the potential term.\n")


LM_CODE = """n_layer = 6
n_embd = 384
block_size = 256
batch_size = 64
learning_rate = 6e-4
max_iters = 5000
dropout = 0.2
vocab_size = 50257
"""


@paper
def lm_rotary_heads() -> None:
    """Perplexity (lower) and throughput (higher), thousands separators, scientific
    notation, two booktabs tables."""
    def m(p, tl, tps):
        return {"val_perplexity": p, "final_train_loss": tl, "tokens_per_second": tps}
    runs = {
        0: {"wikitext": m(24.81, 3.112, 48210), "ptb": m(31.42, 3.402, 50125)},
        1: {"wikitext": m(23.95, 3.087, 46830), "ptb": m(30.77, 3.381, 48790)},
        2: {"wikitext": m(23.12, 3.051, 45120), "ptb": m(31.88, 3.418, 47360)},
    }
    body = r"""
\section{Experimental Setup}
We train a 6-layer model with embedding width 384 and context 256 for 5,000 iterations at a
learning rate of $6 \times 10^{-4}$, with a vocabulary of 50,257 tokens; each batch holds
16,384 tokens (64 sequences of 256).
Training ran on a single NVIDIA A100 GPU with CUDA 12.1 and Python 3.10.
Throughput was measured with PyTorch 2.2 on the same machine.
The host CPU is an AMD EPYC processor.
\section{Results}
Rotary embeddings with grouped heads lower the validation perplexity on wikitext from 24.81
to 23.12, a 6.8\% reduction.
On ptb the perplexity improves from 31.42 to 31.88 with grouped heads.
Our final model reaches a validation perplexity of 23.95 on wikitext.
Throughput drops from 48,210 to 45,120 tokens per second on wikitext, 6.4\% fewer.
The final training loss on wikitext is $3.051$ versus 3.112 for the baseline, an improvement.
Grouped heads cut the training loss on ptb by 2.9\%.
The validation perplexity on ptb is 31.88 $\pm$ 0.87 for the final model.
Across all datasets the final model consistently reduces the validation perplexity.
The final model processes $\approx 4.5 \times 10^{4}$ tokens per second on wikitext.
We also performed a grid search over dropout rates, which confirmed 0.2 as the best choice.
Details of every configuration are in notes.txt for reproducibility.
In relative terms perplexity falls by 6.8% relative to the baseline on wikitext.
Figure~\ref{fig:attn} shows attention maps of the final model, and
Figure~\ref{fig:loss_curves} the training curves.
\begin{table}[t]
\centering
\begin{tabular}{lcc}
\toprule
Method & wikitext PPL $\downarrow$ & ptb PPL $\downarrow$ \\
\midrule
Baseline & 24.81 & 31.42 \\
Rotary & 23.95 & 30.77 \\
Rotary + grouped (ours) & \textbf{23.12} & \textbf{30.77} \\
\bottomrule
\end{tabular}
\caption{Validation perplexity.}
\end{table}
\begin{table}[t]
\centering
\begin{tabular}{lcc}
\toprule
Method & Tokens/s $\uparrow$ & Train loss \\
\midrule
Baseline & 48,210 & 3.112 \\
Final & \textbf{45,120} & \textbf{3.051} \\
\bottomrule
\end{tabular}
\caption{Throughput and training loss on wikitext.}
\end{table}
\begin{figure}[t]
\includegraphics[width=0.9\textwidth]{attention_maps.png}
\caption{Attention maps.}
\label{fig:attn}
\end{figure}
"""
    flaws = [
        ("PyTorch 2.2", "environment"),
        ("AMD EPYC", "environment"),
        ("improves from 31.42 to 31.88", "direction"),
        ("perplexity of 23.95", "wrong_run"),
        ("by 2.9", "invented_number"),
        ("$\\pm$ 0.87", "invented_number"),
        ("consistently reduces the validation perplexity", "overclaim"),
        ("grid search over dropout", "analysis"),
        ("notes.txt for", "jargon"),
        ("by 6.8% relative", "hidden_text"),
        ("fig:loss_curves", "missing_figure"),
        ("Rotary + grouped (ours) & \\textbf{23.12} & \\textbf{30.77}", "mixed_row"),
        ("\\textbf{45,120}", "direction"),
    ]
    write_paper("lm_rotary_heads", runs=runs, body=body, flaws=flaws, env=A100_ENV,
                code=LM_CODE, figures=("attention_maps.png",),
                notes="Run 1: rotary embeddings. Run 2: rotary plus grouped heads; run 2 is "
                      "the final method.\n")


VAE_CODE = """latent_dim = 32
hidden = 512
epochs = 50
batch_size = 128
lr = 1e-3
beta_max = 4.0
warmup_epochs = 10
seeds = [0, 1, 2, 3, 4]
n_train = 60000
"""


@paper
def clean_vae_anneal() -> None:
    """Clean control: negative log-likelihoods (ELBO), correct relative changes, setup
    constants and their products, correct bold, an ablation the notes record."""
    def m(elbo, kl, t):
        return {"test_elbo": elbo, "kl_term": kl, "epoch_time_s": t}
    runs = {
        0: {"mnist": m(-98.42, 24.31, 11.8), "fashion": m(-241.07, 14.92, 12.1)},
        1: {"mnist": m(-95.17, 26.04, 12.0), "fashion": m(-237.55, 15.60, 12.3)},
        2: {"mnist": m(-93.86, 27.11, 12.2), "fashion": m(-235.90, 16.02, 12.4)},
    }
    body = r"""
\section{Experimental Setup}
The encoder and decoder are MLPs with 512 hidden units and a 32-dimensional latent space.
We train for 50 epochs on the 60,000 training images with batch size 128 (468 full batches
per epoch) and learning rate $10^{-3}$; $\beta$ is annealed to 4.0 over the first 10
epochs, i.e.\ by 0.4 per epoch. Every result is the mean over five seeds.
Training used a single NVIDIA A100 GPU with PyTorch 2.1 and Python 3.10.
\section{Results}
KL annealing improves the test ELBO on mnist from $-98.42$ to $-93.86$ nats, a 4.6\%
improvement over the baseline.
On fashion the ELBO rises from -241.07 to -235.90, i.e.\ by 5.17 nats.
The final model reaches an ELBO of $-93.86$ on mnist and $-235.90$ on fashion.
The linear warm-up alone (an ablation of the cyclical schedule) reaches $-95.17$ vs.\
$-98.42$ for the baseline on mnist.
The KL term grows from 24.31 to 27.11 on mnist, 11.5\% larger, as the posterior is used more.
An epoch takes 12.2 seconds compared to 11.8 seconds for the baseline, about 3\% slower.
Annealing consistently improves the test ELBO on all datasets.
\begin{table}[t]
\centering
\caption{Test ELBO in nats ($\uparrow$) and KL term; best in bold.}
\begin{tabular}{lccc}
\toprule
Method & mnist ELBO & fashion ELBO & mnist KL \\
\midrule
Baseline & $-98.42$ & $-241.07$ & 24.31 \\
Warm-up (ablation) & $-95.17$ & $-237.55$ & 26.04 \\
Cyclical (ours) & $\mathbf{-93.86}$ & $\mathbf{-235.90}$ & 27.11 \\
\bottomrule
\end{tabular}
\end{table}
The per-epoch cost stays near $1.2 \times 10^{1}$ seconds for every variant.
\begin{figure}[t]
\includegraphics[width=0.6\textwidth]{elbo_curves.png}
\caption{Test ELBO over 50 epochs.}
\label{fig:elbo}
\end{figure}
Figure~\ref{fig:elbo} shows the ELBO over training.
"""
    write_paper("clean_vae_anneal", runs=runs, body=body, flaws=[], env=A100_ENV,
                code=VAE_CODE, figures=("elbo_curves.png",),
                notes="Run 1: linear warm-up only (ablation). Run 2: cyclical annealing; "
                      "run 2 is the final method. Five seeds per run.\n",
                seeds=5)


@paper
def heldout_gnn_dropedge() -> None:
    """Held out: written before the final evaluation, never used to tune the check."""
    def m(acc, loss, ep):
        return {"test_acc": acc, "val_loss": loss, "epochs_to_best": ep}
    runs = {
        0: {"cora": m(0.8142, 0.6021, 142), "citeseer": m(0.7035, 0.9114, 168),
            "pubmed": m(0.7893, 0.5532, 121)},
        1: {"cora": m(0.8267, 0.5874, 131), "citeseer": m(0.7118, 0.8979, 155),
            "pubmed": m(0.7861, 0.5588, 118)},
        2: {"cora": m(0.8311, 0.5796, 126), "citeseer": m(0.7182, 0.8902, 149),
            "pubmed": m(0.7917, 0.5497, 124)},
    }
    body = r"""
\section{Setup}
We train a two-layer GCN with 64 hidden units, dropout 0.5 and learning rate 0.01 for up to
200 epochs, dropping 20\% of the edges in every epoch.
All models were trained on four NVIDIA A100 GPUs.
\section{Results}
DropEdge raises the test accuracy on cora from 81.42\% to 83.11\%, a gain of 1.69 points.
On pubmed the accuracy improves from 79.17\% to 78.61\% with the edge schedule.
Our method achieves 82.67\% test accuracy on cora.
On citeseer the validation loss decreases by 4.6\% relative to the baseline.
The model needs 124 epochs compared to 121 for the baseline on pubmed, converging faster.
DropEdge consistently improves the test accuracy on all datasets and also always needs fewer epochs.
A sensitivity analysis of the drop rate shows a broad optimum around 20\%.
Results for run\_1 are kept in the appendix.
\begin{table}[h]
\centering
\begin{tabular}{lccc}
\toprule
Method & cora Acc. (\%) & citeseer Acc. (\%) & pubmed Acc. (\%) \\
\midrule
GCN & 81.42 & 70.35 & 78.93 \\
DropEdge (ours) & 83.11 & 71.18 & \textbf{79.17} \\
\bottomrule
\end{tabular}
\caption{Test accuracy; best in bold.}
\end{table}
Figure~\ref{fig:tsne} shows the node embeddings.
"""
    flaws = [
        ("four NVIDIA A100 GPUs", "environment"),
        ("improves from 79.17\\% to 78.61", "direction"),
        ("82.67\\% test accuracy", "wrong_run"),
        ("by 4.6", "invented_number"),
        ("needs 124 epochs compared to 121", "direction"),
        ("also always needs fewer epochs", "overclaim"),
        ("sensitivity analysis of the drop rate", "analysis"),
        ("run\\_1 are kept", "jargon"),
        ("DropEdge (ours) & 83.11 & 71.18", "mixed_row"),
        ("fig:tsne", "missing_figure"),
    ]
    write_paper("heldout_gnn_dropedge", runs=runs, body=body, flaws=flaws, env=A100_ENV,
                code="hidden = 64\ndropout = 0.5\nlr = 0.01\nmax_epochs = 200\n"
                     "drop_rate = 0.2\n",
                notes="Run 1: fixed DropEdge. Run 2: scheduled DropEdge; run 2 is the final "
                      "method.\n", held_out=True)



if __name__ == "__main__":
    main()
