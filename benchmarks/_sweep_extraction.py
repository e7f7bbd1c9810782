"""Scratch recipe sweep (to be deleted)."""
import json, sys, time
import numpy as np, torch
from torch import nn
from evaluators.data.synthetic import SyntheticCorpusConfig
from evaluators.data.mixtures import training_batch
from evaluators.data.mixture_corpora import synthetic_pool, seeded_test_set
from evaluators.extraction_training import LossTerms, training_step, _learning_rate_factor
from evaluators.si_sdr import si_sdr_improvement
from spaces.models.extractor import SpeakerExtractor

torch.set_num_threads(int(__import__("os").environ.get("THREADS", "1")))
run = json.loads(sys.argv[1])
snr = tuple(run.get("snr", (30.0, 40.0)))
c = SyntheticCorpusConfig(train_speakers=run.get("spk", 100), test_speakers=40, utterances_per_speaker=run.get("utt", 10), sample_rate=8000, snr_db=snr, **run.get("corpus", {}))
train = synthetic_pool(c, "train", "/tmp/work/cache")
test = seeded_test_set(synthetic_pool(c, "test", "/tmp/work/cache"), 200, (-5, 5), 0)
torch.manual_seed(0)
model = SpeakerExtractor(**run["model"])
steps, bs, seg, lr = run["steps"], run["bs"], run["seg"], run.get("lr", 1e-3)
terms = LossTerms(cue_weight=run.get("cue", 0.1))
if run.get("spkw", 0):
    terms.speaker_head = nn.Linear(model.voiceprint.embedding.out_features, len(train.speakers)); terms.speaker_weight = run["spkw"]
params = [*model.parameters(), *(terms.speaker_head.parameters() if terms.speaker_head else [])]
opt = torch.optim.Adam(params, lr=lr)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _learning_rate_factor(s, steps) if run.get("cos", True) else min(1.0, (s + 1) / 50))
rng = np.random.default_rng(0)
def evaluate(n):
    model.eval(); vals = []
    with torch.no_grad():
        for m in test[:n]:
            est = model(torch.from_numpy(m.mixture)[None], torch.from_numpy(m.enrollment)[None])[0]
            vals.append(si_sdr_improvement(est, torch.from_numpy(m.mixture), torch.from_numpy(m.target)).item())
    model.train()
    return float(np.mean(vals))
t = time.time(); losses = []
for step in range(steps):
    if step and step % run.get("every", 250) == 0:
        print("  step", step, "loss %.2f" % np.mean(losses[-50:]), "sisdri %.2f" % evaluate(60), "t %.0f" % (time.time() - t), flush=True)
    b = training_batch(train, rng, bs, int(seg * 8000), 16000, (-5, 5))
    losses.append(training_step(model, b, opt, terms, 5.0)); sched.step()
train_s = time.time() - t
torch.save(model.state_dict(), f"/tmp/work/sweep_{run.get('tag', 'x')}.pt")
print(json.dumps({**run, "si_sdri": evaluate(200), "train_s": train_s}), flush=True)
