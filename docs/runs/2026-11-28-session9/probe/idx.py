import os,sys,collections
names=['stream','aa','bb']
for d in sys.argv[1:]:
    fs=sorted(os.listdir(d),key=lambda f:int(f.split('-')[1]))
    groups=[fs[i:i+4] for i in range(0,len(fs),4)]
    out=[]
    for vname in names:
        rows=[]
        for g,files in enumerate(groups):
            r,k=divmod(g,3)
            if names[(k+r)%3]!=vname: continue
            for f in files:
                for i,l in enumerate(open(os.path.join(d,f))):
                    if i>=10: rows.append((i,int(l.split()[0])))
        s=sorted(x for i,x in rows); p99=s[int(len(s)*.99)]
        c=collections.Counter('10-49' if i<50 else ('50-199' if i<200 else '200+') for i,x in rows if x>=60000)
        out.append(f"{vname}: p99 {p99/1e3:.0f} >60us {dict(sorted(c.items()))}")
    print(d,' | '.join(out))
