/**
 * The status page served at `/` on the API listener: plain HTML and JavaScript, no build step, no
 * outside resources (the CSP allows none). It reads /api/status and /api/bans with the bearer token
 * typed into the page (kept in the tab's sessionStorage). Bans and unbans from the page need a
 * configured api.token: without one the page is read-only and the API refuses writes from a browser
 * (control-api.ts). Times are shown in the browser's local time.
 */

/** A shield with a check mark, for /favicon.ico and /favicon.svg. */
export const FAVICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><path d="M16 2 4 7v8c0 7.4 5.1 13.4 12 15 6.9-1.6 12-7.6 12-15V7z" fill="#1d2430"/><path d="m10 16 4 4 8-9" stroke="#3fb950" stroke-width="3" fill="none" stroke-linecap="round" stroke-linejoin="round"/></svg>`;

const STYLE = `
*{box-sizing:border-box}[hidden]{display:none!important}
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2430;overflow-wrap:anywhere}
header{background:#1d2430;color:#fff;padding:10px 16px;display:flex;gap:8px 16px;align-items:center;flex-wrap:wrap}
header h1{font-size:17px;margin:0;flex:1 1 auto}
#state{font-weight:600;padding:2px 10px;border-radius:12px;background:#57606a;color:#fff}
#state.ok{background:#1a7f37}#state.degraded{background:#cf222e}
#reasons{flex-basis:100%;margin:0;padding:0 0 0 18px;color:#ffd7d5;font-size:13px}#reasons:empty{display:none}
#login{display:flex;gap:6px;flex-wrap:wrap}#login input{min-width:0;width:14em;max-width:100%}
main{padding:12px 16px;display:grid;gap:12px;grid-template-columns:minmax(0,1fr);max-width:1200px;margin:0 auto}
.cards{display:grid;gap:12px;grid-template-columns:repeat(auto-fit,minmax(150px,1fr))}
.card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:10px 14px}
.card b{display:block;font-size:24px;line-height:1.2}.card span{color:#57606a;font-size:12px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:12px 14px;min-width:0}
h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:5px 6px;border-bottom:1px solid #eef0f3;font-size:13px;vertical-align:top}
th{color:#57606a;font-weight:600}
.bad{color:#cf222e}.ok{color:#1a7f37}.muted{color:#57606a}
button{font:inherit;padding:3px 10px;cursor:pointer;border:1px solid #8c959f;border-radius:4px;background:#f6f8fa}
button.danger{border-color:#cf222e;color:#cf222e}
input,select{font:inherit;padding:3px 6px;max-width:100%}
.filters,.banform{display:flex;gap:6px;flex-wrap:wrap;margin-bottom:8px}.filters input{flex:1 1 12em}
.banform input[name=ip],.banform input[name=cidr]{flex:1 1 14em}.banform input[name=reason]{flex:2 1 14em}.banform input[name=duration]{width:6em}
#formmsg,#allowmsg{flex-basis:100%}#formmsg:empty,#allowmsg:empty{display:none}
tr.ban{cursor:pointer}tr.detail td{background:#f6f8fa;color:#1d2430}.evidence ul{margin:4px 0;padding-left:18px}
#healthtable td:first-child{white-space:nowrap}
#chart svg{width:100%;height:auto;display:block}
.legend span{display:inline-block;margin-right:12px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
#error{color:#cf222e;margin:0}#error:empty{display:none}
.two{display:grid;gap:12px;grid-template-columns:repeat(auto-fit,minmax(280px,1fr))}
dialog{border:1px solid #8c959f;border-radius:6px;max-width:calc(100vw - 32px)}dialog p{margin-top:0}
@media (max-width:640px){
 table.stack thead{display:none}
 table.stack tr{display:block;border-bottom:1px solid #dde1e7;padding:4px 0}
 table.stack td{display:flex;gap:8px;justify-content:space-between;border:0;padding:2px 4px}
 table.stack td::before{content:attr(data-label);color:#57606a;flex:0 0 auto}
 table.stack td:empty{display:none}
}`;

const SCRIPT = `
const COLORS=['#0969da','#cf222e','#1a7f37','#bf8700','#8250df','#57606a','#e16f24','#0a3069'];
const $=(id)=>document.getElementById(id);
const esc=(s)=>String(s).replace(/[&<>"']/g,(c)=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'})[c]);
const token=()=>sessionStorage.getItem('gkToken')||'';
let bans=[],writable=false,open=null,whyDoc=null;
async function api(path,opts={}){const h=token()?{authorization:'Bearer '+token()}:{};
 const r=await fetch(path,{...opts,headers:{...h,...(opts.body?{'content-type':'application/json'}:{}),...(opts.headers||{})}});
 const body=await r.json().catch(()=>({}));
 if(!r.ok){const e=new Error(body.message||(path+': HTTP '+r.status));e.status=r.status;throw e;}return body;}
function local(iso){const d=new Date(iso);return d.toLocaleString(undefined,{year:'numeric',month:'2-digit',day:'2-digit',hour:'2-digit',minute:'2-digit',second:'2-digit'});}
function left(s){s=Math.max(0,Math.round(s));const d=Math.floor(s/86400),h=Math.floor(s%86400/3600),m=Math.floor(s%3600/60);
 return d?d+'d '+h+'h':h?h+'h '+m+'m':m?m+'m '+(s%60)+'s':s+'s';}
let lastHours=null;
function chart(hours){lastHours=hours;const services=[...new Set(hours.flatMap((h)=>Object.keys(h.failures)))].sort();
 const totals=hours.map((h)=>Object.values(h.failures).reduce((a,b)=>a+b,0));
 const max=Math.max(1,...totals);const step=Math.pow(10,Math.floor(Math.log10(max)));const top=Math.ceil(max/(2*step))*2*step;
 // Drawn at the container's pixel width (1 unit = 1 px): text stays 10 px on a phone and on a desktop.
 const W=Math.max(240,$('chart').clientWidth||720),L=36,H=150,T=14,bw=(W-L)/hours.length,every=W<500?6:3;let out='';
 [0,top/2,top].forEach((v)=>{const y=T+H-(v/top)*H;out+='<line x1="'+L+'" x2="'+W+'" y1="'+y+'" y2="'+y+'" stroke="#eef0f3"/><text class="ytick" x="'+(L-4)+'" y="'+(y+4)+'" font-size="10" text-anchor="end">'+(Math.round(v*10)/10)+'</text>';});
 hours.forEach((h,i)=>{let y=T+H;const x=L+i*bw;services.forEach((s,k)=>{const v=h.failures[s]||0;if(!v)return;const hgt=(v/top)*H;y-=hgt;
  out+='<rect class="bar" x="'+(x+2)+'" y="'+y+'" width="'+(bw-4)+'" height="'+hgt+'" fill="'+COLORS[k%COLORS.length]+'"><title>'+esc(s)+': '+v+' at '+new Date(h.start).getHours()+':00</title></rect>';});
  if(totals[i])out+='<text class="count" x="'+(x+bw/2)+'" y="'+(y-3)+'" font-size="10" text-anchor="middle">'+totals[i]+'</text>';
  if(i%every===0)out+='<text class="xtick" x="'+(x+bw/2)+'" y="'+(T+H+14)+'" font-size="10" text-anchor="middle">'+String(new Date(h.start).getHours()).padStart(2,'0')+':00</text>';});
 out+='<line x1="'+L+'" x2="'+L+'" y1="'+T+'" y2="'+(T+H)+'" stroke="#8c959f"/><line x1="'+L+'" x2="'+W+'" y1="'+(T+H)+'" y2="'+(T+H)+'" stroke="#8c959f"/>';
 $('chart').innerHTML='<svg viewBox="0 0 '+W+' '+(T+H+20)+'" role="img" aria-label="failed logins per hour and service, last 24 hours">'+out+'</svg>';
 const per={};hours.forEach((h)=>Object.entries(h.failures).forEach(([s,v])=>{per[s]=(per[s]||0)+v;}));
 $('legend').innerHTML=services.map((s,k)=>'<span><i style="background:'+COLORS[k%COLORS.length]+'"></i>'+esc(s)+' '+per[s]+'</span>').join('')||'<span>no failed logins in the last 24 hours</span>';
 return per;}
function renderBans(){const q=$('search').value.trim().toLowerCase(),svc=$('fservice').value,tier=$('ftier').value;
 const shown=bans.filter((b)=>(!svc||b.service===svc)&&(!tier||b.tier===tier)&&(!q||[b.ip,b.reason,b.service,b.note||''].join(' ').toLowerCase().includes(q)));
 $('bancount').textContent=shown.length===bans.length?bans.length:shown.length+' of '+bans.length;
 const cell=(l,v)=>'<td data-label="'+l+'"><span>'+v+'</span></td>';
 $('bans').innerHTML=shown.map((b)=>'<tr class="ban" data-ip="'+esc(b.ip)+'">'+cell('address','<b>'+esc(b.ip)+'</b>')+cell('service',esc(b.service))+cell('rule',esc(b.reason))+cell('reason',esc(b.note||''))+
  cell('since',esc(local(b.since)))+cell('time left',esc(left(b.remainingSeconds))+' <span class="muted">('+esc(b.tier)+(b.shadow?', shadow':'')+')</span>')+
  '<td>'+(writable?'<button class="danger unban" data-ip="'+esc(b.ip)+'">unban</button>':'')+'</td></tr>'+
  (open===b.ip?'<tr class="detail"><td colspan="7">ban #'+b.count+' of this address · source '+esc(b.source)+' · tier '+esc(b.tier)+' · until '+esc(local(b.until))+(b.note?' · '+esc(b.note):'')+evidence(b.ip)+'</td></tr>':'')).join('')||
  '<tr><td colspan="7">'+(bans.length?'no ban matches':'no active bans')+'</td></tr>';}
function evidence(ip){if(!whyDoc||whyDoc.for!==ip)return '<div class="muted">loading the evidence…</div>';const w=whyDoc.doc;
 const ev=(w.evidence||[]).map((e)=>'<li>'+esc(local(e.at))+' · '+esc(e.service)+' · '+esc(e.account||'(no account)')+' · '+e.failures+' failure(s)</li>').join('');
 return '<div class="evidence">made by '+esc(w.madeBy||(w.ban&&w.ban.source)||'?')+(ev?'; the failed logins counted before the ban:<ul>'+ev+'</ul>':'; no failed logins kept (a manual ban, or made before history was kept)')+'</div>';}
async function loadWhy(ip){try{const doc=await api('/api/why/'+encodeURIComponent(ip));whyDoc={for:ip,doc};}catch(e){whyDoc={for:ip,doc:{evidence:[],madeBy:'? ('+e.message+')'}};}if(open===ip)renderBans();}
async function refresh(){try{const [st,b,al]=await Promise.all([api('/api/status'),api('/api/bans'),api('/api/allow')]);$('error').textContent='';
 const h=st.health;writable=!!(st.access&&st.access.writable);
 document.body.dataset.access=writable?(token()?'write':'locked'):'read-only';
 $('state').textContent=h.status;$('state').className=h.status;$('mode').textContent='mode '+h.mode;
 $('reasons').innerHTML=(h.reasons||[]).map((r)=>'<li>'+esc(r)+'</li>').join('');
 $('cstate').textContent=h.status;$('cstate').className=h.status==='ok'?'ok':'bad';$('cstatewhy').textContent=(h.reasons||[]).length?h.reasons.length+' problem(s), see above':'store, Zimbra and firewall fine';
 $('cbans').textContent=st.activeBans;$('cbanstier').textContent='proxy '+(st.bansByTier.proxy||0)+' · firewall '+(st.bansByTier.firewall||0);
 const last=st.activity.hours[st.activity.hours.length-1];$('chour').textContent=Object.values(last.failures).reduce((a,c)=>a+c,0);
 $('chourwhen').textContent='failed logins since '+String(new Date(last.start).getHours()).padStart(2,'0')+':00';
 const per=chart(st.activity.hours);const topsvc=Object.entries(per).sort((a,c)=>c[1]-a[1])[0];
 $('ctop').textContent=topsvc?topsvc[0]:'none';$('ctopn').textContent=topsvc?topsvc[1]+' failed logins in 24 h':'no failed logins in 24 h';
 $('healthtable').innerHTML='<tr><td>store</td><td class="'+(h.store.ok?'ok':'bad')+'">'+esc(h.store.backend+': '+h.store.detail)+'</td></tr>'+
  Object.entries(h.upstreams||{}).map(([k,v])=>'<tr><td>zimbra '+esc(k)+'</td><td class="'+(v.ok?'ok':'bad')+'">'+esc(v.url+': '+(v.ok?'up, '+v.detail+' in '+v.latencyMs+' ms':'DOWN, '+v.detail+(v.lastOkAt?' (last good answer '+local(v.lastOkAt)+')':'')))+'</td></tr>').join('')+
  '<tr><td>firewall</td><td>'+esc(h.firewall.backend)+(h.firewall.ok===false?' <span class="bad">'+esc(h.firewall.lastError||'error')+'</span>':'')+'</td></tr>';
 bans=b.bans;const svcs=[...new Set(bans.map((x)=>x.service))].sort();const cur=$('fservice').value;
 $('fservice').innerHTML='<option value="">all services</option>'+svcs.map((s)=>'<option'+(s===cur?' selected':'')+'>'+esc(s)+'</option>').join('');
 renderBans();
 $('allow').innerHTML=al.entries.map((x)=>'<tr><td data-label="network"><span><b>'+esc(x.cidr)+'</b></span></td><td data-label="reason"><span>'+esc(x.reason)+'</span></td><td data-label="until"><span>'+(x.until?esc(local(x.until))+' ('+esc(left(x.remainingSeconds))+' left)':'until removed')+'</span></td><td>'+(writable?'<button class="danger disallow" data-cidr="'+esc(x.cidr)+'">remove</button>':'')+'</td></tr>').join('')||'<tr><td colspan="4">no runtime entries</td></tr>';
 $('allowstatic').textContent=al.static.join(', ')||'none';
 $('topips').innerHTML=st.activity.topAddresses.map((x)=>'<tr><td>'+esc(x.ip)+'</td><td>'+x.failures+'</td></tr>').join('')||'<tr><td>none</td></tr>';
 $('topaccounts').innerHTML=st.activity.topAccounts.map((x)=>'<tr><td>'+esc(x.account)+'</td><td>'+x.failures+'</td></tr>').join('')||'<tr><td>none</td></tr>';
 $('banform').hidden=!writable||!token();$('allowform').hidden=!writable||!token();$('login').hidden=!writable;$('readonly').hidden=writable;
 document.body.dataset.loaded='1';}
 catch(e){$('error').textContent=e.status===401?'This gatekeeper has an API token: enter it above to see and change bans.':e.message;$('login').hidden=false;$('banform').hidden=true;$('allowform').hidden=true;document.body.dataset.loaded='error';}}
let pending=null;
function ask(what,target,where,button,path){pending=path;$('confirmwhat').textContent=what;$('confirmip').textContent=target;$('confirmwhere').textContent=where;$('confirmyes').textContent=button;$('confirm').returnValue='';$('confirm').showModal();}
$('bans').addEventListener('click',(e)=>{const t=e.target;if(t.classList.contains('unban')){ask('Lift the ban of',t.dataset.ip,' on every instance and in the firewall','Unban','/api/bans/'+encodeURIComponent(t.dataset.ip));return;}
 const row=t.closest('tr.ban');if(row){open=open===row.dataset.ip?null:row.dataset.ip;renderBans();if(open)loadWhy(open);}});
$('confirm').addEventListener('close',async()=>{if($('confirm').returnValue!=='yes'||!pending)return;const path=pending;pending=null;
 try{await api(path,{method:'DELETE'});$('error').textContent='';}catch(err){$('error').textContent=err.message;}refresh();});
$('allow').addEventListener('click',(e)=>{const t=e.target;if(t.classList.contains('disallow'))ask('Remove',t.dataset.cidr,' from the allowlist (it is counted and banned again)','Remove','/api/allow/'+encodeURIComponent(t.dataset.cidr));});
$('allowform').addEventListener('submit',async(e)=>{e.preventDefault();const f=e.target;$('allowmsg').textContent='';
 const body={cidr:f.cidr.value.trim(),reason:f.reason.value.trim()||undefined,duration:f.duration.value.trim()||undefined,force:f.force.checked||undefined};
 try{const r=await api('/api/allow',{method:'POST',body:JSON.stringify(body)});$('allowmsg').className='ok';$('allowmsg').textContent='allowed '+r.entry.cidr+(r.lifted.length?'; lifted '+r.lifted.length+' ban(s)':'');f.reset();}
 catch(err){$('allowmsg').className='bad';$('allowmsg').textContent=err.message;}refresh();});
$('banform').addEventListener('submit',async(e)=>{e.preventDefault();const f=e.target;$('formmsg').textContent='';
 const body={ip:f.ip.value.trim(),reason:f.reason.value.trim()||undefined,duration:f.duration.value.trim()||undefined,force:f.force.checked||undefined};
 try{const r=await api('/api/bans',{method:'POST',body:JSON.stringify(body)});$('formmsg').className='ok';$('formmsg').textContent='banned '+r.ban.ip+' until '+local(r.ban.until);f.reset();}
 catch(err){$('formmsg').className='bad';$('formmsg').textContent=err.message;}refresh();});
window.addEventListener('resize',()=>{if(lastHours)chart(lastHours);});
['search','fservice','ftier'].forEach((id)=>$(id).addEventListener('input',renderBans));
$('save').addEventListener('click',()=>{sessionStorage.setItem('gkToken',$('token').value);$('token').value='';refresh();});
refresh();setInterval(refresh,10000);`;

export const STATUS_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>zimbra-gatekeeper status</title><link rel="icon" href="/favicon.svg" type="image/svg+xml">
<style>${STYLE}</style></head>
<body>
<header><h1>zimbra-gatekeeper</h1><span id="state">…</span><span id="mode"></span>
<span id="login" hidden><input id="token" type="password" autocomplete="off" placeholder="API token" aria-label="API token"><button id="save">Use token</button></span>
<ul id="reasons"></ul></header>
<main>
<p id="error"></p>
<div class="cards">
<div class="card"><span>state</span><b id="cstate">…</b><span id="cstatewhy"></span></div>
<div class="card"><span>active bans</span><b id="cbans">…</b><span id="cbanstier"></span></div>
<div class="card"><span>this hour</span><b id="chour">…</b><span id="chourwhen"></span></div>
<div class="card"><span>top service</span><b id="ctop">…</b><span id="ctopn"></span></div>
</div>
<section><h2>Active bans (<span id="bancount">0</span>)</h2>
<p id="readonly" class="muted" hidden>Read-only: set <code>api.token</code> in the config to ban and unban from this page.</p>
<form id="banform" class="banform" hidden><input name="ip" required placeholder="address or network" aria-label="address or network"><input name="duration" placeholder="24h" aria-label="duration">
<input name="reason" placeholder="reason (ticket, note)" aria-label="reason"><label><input type="checkbox" name="force"> wider than /16</label><button type="submit">Ban</button><span id="formmsg"></span></form>
<div class="filters"><input id="search" type="search" placeholder="search address, rule, service, reason" aria-label="search bans">
<select id="fservice" aria-label="service"><option value="">all services</option></select>
<select id="ftier" aria-label="tier"><option value="">all tiers</option><option>proxy</option><option>firewall</option></select></div>
<table class="stack"><thead><tr><th>address</th><th>service</th><th>rule</th><th>reason</th><th>since</th><th>time left</th><th></th></tr></thead><tbody id="bans"></tbody></table></section>
<section><h2>Allowlist: never counted, never banned</h2>
<form id="allowform" class="banform" hidden><input name="cidr" required placeholder="address or network" aria-label="address or network to allow"><input name="duration" placeholder="forever" aria-label="duration">
<input name="reason" placeholder="reason (office, monitoring)" aria-label="reason"><label><input type="checkbox" name="force"> wider than /16</label><button type="submit">Allow</button><span id="allowmsg"></span></form>
<table class="stack"><thead><tr><th>network</th><th>reason</th><th>until</th><th></th></tr></thead><tbody id="allow"></tbody></table>
<p class="muted">From the config (jail.ignoreip, trustedProxies, upstreams): <span id="allowstatic"></span></p></section>
<section><h2>Failed logins per service, last 24 hours</h2><div id="chart"></div><div class="legend" id="legend"></div></section>
<div class="two">
<section><h2>Top offending addresses (24 h)</h2><table><tbody id="topips"></tbody></table></section>
<section><h2>Most targeted accounts (24 h)</h2><table><tbody id="topaccounts"></tbody></table></section>
<section><h2>Health</h2><table><tbody id="healthtable"></tbody></table></section>
</div>
</main>
<dialog id="confirm"><form method="dialog"><p><span id="confirmwhat"></span> <b id="confirmip"></b><span id="confirmwhere"></span>?</p>
<button value="cancel">Cancel</button> <button value="yes" class="danger" id="confirmyes">Unban</button></form></dialog>
<script>${SCRIPT}</script></body></html>
`;
