"""Scratch recipe sweep (to be deleted)."""
import json, sys, time, itertools, os
import numpy as np, torch
from evaluators.data.synthetic import SyntheticCorpusConfig
from evaluators.data.mixtures import MixtureConfig, training_batch
from evaluators.data.mixture_corpora import synthetic_pool, seeded_test_set
from evaluators.extraction_training import extraction_loss, _learning_rate_factor
from evaluators.si_sdr import si_sdr_improvement
from spaces.models.extractor import SpeakerExtractor

dev = "cpu"
torch.set_num_threads(1)
out = os.environ.get("OUT", "/tmp")
runs = json.loads(sys.argv[1])
pools = {}
def data(snr, spk, utt):
    key = (snr, spk, utt)
    if key not in pools:
        c = SyntheticCorpusConfig(train_speakers=spk, test_speakers=40, utterances_per_speaker=utt, sample_rate=8000, snr_db=snr)
        t = time.time()
        pools[key] = (synthetic_pool(c, "train", "/tmp/cache"), seeded_test_set(synthetic_pool(c, "test", "/tmp/cache"), 200, (-5, 5), 0))
        print("data", key, time.time() - t, flush=True)
    return pools[key]

for run in runs:
    snr = tuple(run.get("snr", (30.0, 40.0))); spk = run.get("spk", 100); utt = run.get("utt", 10)
    train, test = data(snr, spk, utt)
    torch.manual_seed(0)
    model = SpeakerExtractor(**run["model"]).to(dev)
    steps, bs, seg, lr = run["steps"], run["bs"], run["seg"], run.get("lr", 1e-3)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _learning_rate_factor(s, steps) if run.get("cos", True) else 1.0)
    rng = np.random.default_rng(0)
    mc = MixtureConfig()
    t = time.time()
    def evaluate(n):
        model.eval(); vals = []
        with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
            for m in test[:n]:
                est = model(torch.from_numpy(m.mixture)[None].to(dev), torch.from_numpy(m.enrollment)[None].to(dev))[0].cpu()
                vals.append(si_sdr_improvement(est, torch.from_numpy(m.mixture), torch.from_numpy(m.target)).item())
        model.train()
        return float(np.mean(vals))
    for step in range(steps):
        if step and step % run.get("every", 250) == 0:
            print("  step", step, "loss %.2f" % loss.item(), "sisdri %.2f" % evaluate(60), "t %.0f" % (time.time() - t), flush=True)
        b = training_batch(train, rng, bs, int(seg * 8000), 16000, (-5, 5))
        b = type(b)(b.mixture.to(dev), b.target.to(dev), b.enrollment.to(dev))
        loss = extraction_loss(model, b, run.get("cue", 0.1))
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0); opt.step(); sched.step()
    train_s = time.time() - t
    print(json.dumps({**run, "si_sdri": evaluate(200), "train_s": train_s, "last_loss": loss.item()}), flush=True)
