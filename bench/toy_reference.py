"""The toy example of the original notebook, re-implemented in numpy with an explicit solve per step.

Prints the loss (mean squared error against sin(2 pi x) on 101 grid points) of each of the six
steps and of the limit, at full precision; crates/sd-kernel/tests/toy.rs asserts these numbers.
Run: python3 bench/toy_reference.py
"""
import numpy as np
X=np.linspace(0,1,11)
Y=np.array([0.38476636465198066, 1.2333967683416893, 1.33232242218057, 0.69201594888895180, -0.29756145531871736, -0.24189291901377769, -0.7964485769175675, -0.9616480167034174, -0.49672509509916934, -0.3469066003991437, 0.5589512650600734])
g=80; lam=0.2
K=np.exp(-g*(X[:,None]-X[None,:])**2)
xt=np.linspace(0,1,101)
Kt=np.exp(-g*(xt[:,None]-X[None,:])**2)
tt=np.sin(2*np.pi*xt)
for alpha in [0,0.25,0.35,0.5]:
    y=Y.copy(); out=[]
    for t in range(6):
        c=np.linalg.solve(K+lam*np.eye(11), alpha*Y+(1-alpha)*y if t>0 else Y)
        y=K@c
        out.append(np.mean((Kt@c-tt)**2))
    if alpha>0:
        c=np.linalg.solve(K+lam/alpha*np.eye(11),Y); lim=np.mean((Kt@c-tt)**2)
    else: lim=np.mean(tt**2)
    print(alpha, [float(o) for o in out], float(lim))
